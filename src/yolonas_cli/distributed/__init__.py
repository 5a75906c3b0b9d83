"""Running past one process on Ray: the cluster, model files shipped to workers, batch inference on actors."""
