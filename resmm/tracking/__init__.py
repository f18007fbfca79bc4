"""Every MLflow call lives here: runs, params, metrics, plots, the pyfunc model and its registration."""
