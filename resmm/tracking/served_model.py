"""The code MLflow logs as the model (models-from-code): nothing is pickled, the served class is named here.

MLflow runs this file when it loads the model, with the model's bundled `resmm` package first on sys.path.
"""
from mlflow.models import set_model

from resmm.tracking.pyfunc_model import ResmmPyfunc

set_model(ResmmPyfunc())
