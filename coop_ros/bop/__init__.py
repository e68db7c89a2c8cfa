"""BOP-style data and evaluation: pose error metrics (``coop_ros.bop.metrics``), dataset reading,
synthetic scenes. Everything below uses metres and pixels; BOP files are in mm and are converted
where they are read."""
