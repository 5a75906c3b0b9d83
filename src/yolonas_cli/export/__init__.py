"""Exporters, one module per format (`onnx_export`, `torchscript_export`, `openvino_export`,
`tensorrt_export`), with the shared pieces: the metadata record every exported file carries (`metadata`),
the torch modules that are traced (`wrappers`), INT8 calibration and its cost report (`calibration`,
`int8`). The format table and the entry point are in `yolonas_cli.exporter`. Heavy imports (onnx,
onnxruntime, openvino, tensorrt) happen inside functions only."""
