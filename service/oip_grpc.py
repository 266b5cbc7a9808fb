"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService`, on the same port
as `ssd.v1.Detector`.

Implemented: ServerLive, ServerReady, ModelReady (false for a model the repository does not
have, as Triton answers), ServerMetadata, ModelMetadata, ModelInfer, ModelStreamInfer,
ModelConfig, ModelStatistics, RepositoryIndex, RepositoryModelLoad, RepositoryModelUnload;
the shared-memory, trace and logging rpcs answer UNIMPLEMENTED (the generated base class).

ModelInfer takes `IMAGE` as `raw_input_contents` (4-byte little-endian length-prefixed
elements, as tritonclient sends) or as `contents.bytes_contents`, and answers every output in
`raw_output_contents`. ModelStreamInfer runs through `service.streams.answer_stream`, as
`StreamDetect` does: items concurrently within `SSD_GRPC_STREAM_WINDOW`, answered in
completion order, each response carrying its request's `id`; a failed item answers
`error_message` ("[request id: <id>] ...", since tritonclient hands a stream error to its
callback without the response) and the stream goes on.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeVar

import grpc
from google.protobuf import json_format

from service._codegen import ensure_generated

ensure_generated()

from service import oip_repository, oip_stats  # noqa: E402
from service._generated import grpc_service_pb2 as pb  # noqa: E402
from service._generated import grpc_service_pb2_grpc as pb_grpc  # noqa: E402
from service.errors import InvalidTensorError, OverloadedError, ServiceError  # noqa: E402
from service.grpc_guard import CallLimit  # noqa: E402
from service.oip_contract import (  # noqa: E402
    OUTPUT_DATATYPES,
    check_image_input,
    check_image_type,
    model_config,
    model_metadata,
    output_names,
    request_options,
    server_metadata,
)
from service.oip_infer import GRPC, InferRequest, InferResponse, infer, observe_refused  # noqa: E402
from service.oip_tensors import split_bytes, to_raw  # noqa: E402
from service.runtime import Runtime  # noqa: E402
from service.streams import serve_stream_call  # noqa: E402

Message = TypeVar("Message")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
FINAL_RESPONSE_FLAG = "triton_enable_empty_final_response"


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """`inference.GRPCInferenceService` over a shared `Runtime`.

    Args:
        calls: the detection-call limit shared with `ssd.v1.Detector`.
    """

    def __init__(self, runtime: Runtime, calls: CallLimit) -> None:
        self.runtime = runtime
        self.calls = calls

    async def ServerLive(  # noqa: N802 - names fixed by the proto
        self, request: pb.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(  # noqa: N802
        self, request: pb.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.runtime.ready)

    async def ModelReady(  # noqa: N802
        self, request: pb.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelReadyResponse:
        try:
            ready = oip_repository.model_ready(
                self.runtime.repository, request.name, request.version
            )
        except ServiceError:
            ready = False
        return pb.ModelReadyResponse(ready=self.runtime.ready and ready)

    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ServerMetadataResponse:
        return _from_json(server_metadata(), pb.ServerMetadataResponse())

    async def ModelMetadata(  # noqa: N802
        self, request: pb.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelMetadataResponse:
        try:
            target = self.runtime.repository.route(request.name, request.version or None)
        except ServiceError as error:
            await context.abort(error.grpc_code, error.message)
        metadata = model_metadata(target.name, [target.version])
        return _from_json(metadata, pb.ModelMetadataResponse())

    async def ModelConfig(  # noqa: N802
        self, request: pb.ModelConfigRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelConfigResponse:
        try:
            target = self.runtime.repository.route(request.name, request.version or None)
        except ServiceError as error:
            await context.abort(error.grpc_code, error.message)
        config = model_config(
            target.name,
            self.runtime.settings,
            target.batcher.batch_sizes,
            target.detector.config.class_names,
            target.detector.engine,
        )
        return _from_json({"config": config}, pb.ModelConfigResponse())

    async def ModelStatistics(  # noqa: N802
        self, request: pb.ModelStatisticsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        try:
            models = oip_stats.select_versions(
                self.runtime.repository, request.name, request.version
            )
        except ServiceError as error:
            await context.abort(error.grpc_code, error.message)
        return _from_json(oip_stats.statistics(models), pb.ModelStatisticsResponse())

    async def RepositoryIndex(  # noqa: N802
        self, request: pb.RepositoryIndexRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryIndexResponse:
        rows = oip_repository.index(self.runtime.repository, request.ready)
        return _from_json({"models": rows}, pb.RepositoryIndexResponse())

    async def RepositoryModelLoad(  # noqa: N802
        self, request: pb.RepositoryModelLoadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        try:
            await oip_repository.load(
                self.runtime.repository, request.model_name, _parameters(request.parameters)
            )
        except ServiceError as error:
            await context.abort(error.grpc_code, error.message)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(  # noqa: N802
        self, request: pb.RepositoryModelUnloadRequest, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        try:
            await oip_repository.unload(
                self.runtime.repository, request.model_name, _parameters(request.parameters)
            )
        except ServiceError as error:
            await context.abort(error.grpc_code, error.message)
        return pb.RepositoryModelUnloadResponse()

    async def ModelInfer(  # noqa: N802
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelInferResponse:
        try:
            with self._call_slot():
                answer = await self._infer(request, context, paced=False)
        except ServiceError as error:
            await context.abort(error.grpc_code, error.message)
        return _to_response(answer)

    async def ModelStreamInfer(  # noqa: N802
        self,
        request_iterator: AsyncIterator[pb.ModelInferRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        async for response in serve_stream_call(
            request_iterator,
            lambda request: self._answer_item(request, context),
            _error_item,
            window=self.runtime.settings.grpc_stream_window,
            context=context,
            call_slot=self._call_slot,
        ):
            yield response

    def _call_slot(self) -> Any:
        if self.calls.full:
            error = OverloadedError(f"too many calls in flight ({self.calls.limit}); retry later")
            observe_refused(self.runtime, GRPC, error, time.perf_counter(), "")
        return self.calls.slot()

    async def _answer_item(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> pb.ModelStreamInferResponse:
        answer = await self._infer(request, context, paced=True)
        response = pb.ModelStreamInferResponse(infer_response=_to_response(answer))
        if _flag(request, FINAL_RESPONSE_FLAG):
            # One response per request: it is the final one (Triton's decoupled-model marker).
            response.infer_response.parameters["triton_final_response"].bool_param = True
        return response

    async def _infer(
        self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext, *, paced: bool
    ) -> InferResponse:
        """Parse `request` (refusals counted in the metrics) and run it."""
        started = time.perf_counter()
        try:
            parsed = _parse(request, self.runtime.settings.max_queue_size)
        except ServiceError as error:
            observe_refused(self.runtime, GRPC, error, started, request.model_name)
            raise
        return await infer(
            self.runtime, parsed, GRPC, timeout_s=context.time_remaining(), paced=paced
        )


def _parse(request: pb.ModelInferRequest, max_images: int) -> InferRequest:
    """The `InferRequest` a ModelInferRequest carries.

    Raises:
        InvalidTensorError: tensors that do not fit the protocol or the contract.
        InvalidParameterError: a bad request parameter.
    """
    if len(request.inputs) != 1:
        raise InvalidTensorError("this model takes exactly one input, 'IMAGE'")
    tensor = request.inputs[0]
    check_image_type(tensor.name, tensor.datatype)
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1 or tensor.HasField("contents"):
            raise InvalidTensorError(
                "send the input either in raw_input_contents (one entry) or in contents"
            )
        images = split_bytes(request.raw_input_contents[0], tensor.name)
    else:
        images = list(tensor.contents.bytes_contents)
    check_image_input(tensor.name, tensor.datatype, list(tensor.shape), len(images), max_images)
    for output in request.outputs:
        if "classification" in output.parameters:
            raise InvalidTensorError(
                f"output {output.name!r}: the classification extension is not supported"
            )
    return InferRequest(
        model=request.model_name,
        version=request.model_version or None,
        id=request.id,
        images=images,
        options=request_options(_parameters(request.parameters)),
        outputs=output_names([output.name for output in request.outputs]),
    )


def _parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """InferParameter / ModelRepositoryParameter map -> name: the value of its oneof."""
    values = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        values[key] = None if choice is None else getattr(parameter, choice)
    return {key: value for key, value in values.items() if value is not None}


def _flag(request: pb.ModelInferRequest, name: str) -> bool:
    parameter = request.parameters.get(name)
    return (
        parameter is not None
        and parameter.WhichOneof("parameter_choice") == "bool_param"
        and (parameter.bool_param)
    )


def _from_json(value: Mapping[str, Any], message: Message) -> Message:
    """`message` filled from the protocol's JSON form of it (the same field names)."""
    json_format.ParseDict(value, message)
    return message


def _to_response(answer: InferResponse) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(
        model_name=answer.model_name, model_version=answer.model_version, id=answer.id
    )
    for name, array in answer.outputs.items():
        datatype = OUTPUT_DATATYPES[name]
        response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        response.raw_output_contents.append(to_raw(array, datatype))
    return response


def _error_item(request: pb.ModelInferRequest, error: ServiceError) -> pb.ModelStreamInferResponse:
    """The stream response reporting `error` for one item, with its id."""
    message = f"[request id: {request.id}] {error.message}" if request.id else error.message
    return pb.ModelStreamInferResponse(
        error_message=message,
        infer_response=pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        ),
    )


def add_to_server(runtime: Runtime, calls: CallLimit, server: grpc.aio.Server) -> None:
    """Serve `inference.GRPCInferenceService` on `server`."""
    servicer = InferenceServicer(runtime, calls)
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
