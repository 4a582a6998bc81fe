-- The second database of the production topology (docker-compose.yml's postgres service runs this
-- once, on an empty volume): `tidecast` (POSTGRES_DB) holds the readings and the prediction store,
-- `mlflow` the MLflow server's runs and registry. See docs/production.md.
CREATE DATABASE mlflow OWNER tidecast;
