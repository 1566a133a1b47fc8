"""TensorRT runtime: engines built from our ONNX files, cached per GPU, run with the tensor API.

Modules, lowest first (none imports TensorRT or torch at import time; both are optional):

* ``cache``: which cached engine fits (the key, file names, sidecars, staleness); pure, tested without
  a GPU;
* ``mixed_precision``: the fp16/fp32 mixed ONNX rewrite that strongly typed fp16 builds start from;
* ``runtime``: TensorRT / CUDA access and one deserialized engine run on torch CUDA tensors;
* ``build``: optimisation profiles, engine builds and the build-or-reuse step through the cache;
* ``backend``: the reconstructor backend;
* ``detector``: the hand detector whose network runs as an engine (letterbox, decoding and NMS are
  core/image/detector.py's).

Precision (the documented choice): **strongly typed networks with a mixed-precision ONNX**.
TensorRT 11 removed weak typing (BuilderFlag.FP16, layer.precision, OBEY_PRECISION_CONSTRAINTS;
facts: TensorRT "Migrating from 10.x to 11.x", docs.nvidia.com), and TensorRT 10 already supports
NetworkDefinitionCreationFlag.STRONGLY_TYPED, so one path serves both: for ``fp16`` the float32 ONNX
is rewritten into a mixed graph (inputs/outputs stay float32; see ``mixed_precision``); ``fp32``
builds the unmodified file with TF32 disabled, so it is a true float32 reference.

Device buffers (the documented choice): torch CUDA tensors. The caching allocator owns and frees
them (no manual cudaFree paths to leak), they share torch's current stream, and crops already on
the GPU (see core/image/device_preprocessing.py) are passed in without a host round trip. CUDA errors seen
after a launch are reported with their CUDA error names via cuda-python (``cuda.bindings.runtime``)
when installed.
"""
