"""The pyfunc entry point MLflow loads ("models from code"): the model is tidecast's own class, not a pickle of it."""

from mlflow.models import set_model

from tidecast.tracking.pyfunc import TidecastModel

set_model(TidecastModel())
