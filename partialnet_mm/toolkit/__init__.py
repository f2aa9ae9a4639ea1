"""What the scripts in tools/ run: the MM tools with our registration (``launch``),
checkpoint fusion (``reparameterize``) and conversion (``convert``), ONNX export,
parameter and FLOP counts (``complexity``)."""
