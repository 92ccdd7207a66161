"""The graph executor's operator library: ONNX operators (``math``, ``tensor``, ``conv``,
``quantized``), Keras layers (``keras_layers``, ``keras_around``), the one numpy activation
table (``activations``), output-size limits (``limits``) and the ONNX Runtime fallback."""
