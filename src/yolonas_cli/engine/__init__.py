"""The inference engine: letterbox, box ops and NMS, postprocessing, the backend interface and the Engine."""
