"""`trustctl`: the operator and developer command line."""
