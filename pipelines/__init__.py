"""resmm's Ray Data graphs. Importing the package applies the Ray Data fix in pipelines/ray_data_limits.py in
every process that runs one of these graphs: the driver, and each actor that runs a graph for Ray Train's
workers (it unpickles the graph's stages from these modules before it starts)."""
from pipelines.ray_data_limits import refresh_limits_until_known

refresh_limits_until_known()
