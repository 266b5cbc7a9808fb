"""The protobuf descriptor pool of the Open Inference Protocol messages (package `inference`).

Private to this service: tritonclient, kserve and MLServer each register the same message
names (`inference.ModelInferRequest`, ...) in protobuf's default pool, and protobuf refuses a
second definition of a name, so the stubs generated from `protos/inference/` register here
instead (`service._codegen`). Messages built from this pool serialise to the same bytes.
"""

from __future__ import annotations

from google.protobuf import descriptor_pool

OIP_POOL = descriptor_pool.DescriptorPool()
