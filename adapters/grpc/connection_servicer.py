"""`qbsync.v1.ConnectionService` over the core's ConnectionService use cases (permission `admin`).

As in SyncServicer, what conversion found wrong is passed to the use case, which checks the permission
first and then reports it with its own findings.
"""

from __future__ import annotations

import grpc

from adapters.grpc import connection_convert as convert
from adapters.grpc.auth import current_principal
from core.connections_service import ConnectionService
from core.errors import FieldViolation
from qbsync.v1 import connection_service_pb2 as pb
from qbsync.v1 import connection_service_pb2_grpc


class ConnectionServicer(connection_service_pb2_grpc.ConnectionServiceServicer):
    def __init__(self, service: ConnectionService) -> None:
        self._service = service

    def GetAuthorizationUrl(
        self, request: pb.GetAuthorizationUrlRequest, context: grpc.ServicerContext
    ) -> pb.GetAuthorizationUrlResponse:
        violations: list[FieldViolation] = []
        environment = convert.environment_from_proto(request.environment, violations)
        url, state = self._service.get_authorization_url(
            current_principal(),
            request.redirect_uri,
            environment,
            branch_id=request.branch_id,
            conversion_violations=violations,
        )
        return pb.GetAuthorizationUrlResponse(authorization_url=url, state=state)

    def CompleteAuthorization(
        self, request: pb.CompleteAuthorizationRequest, context: grpc.ServicerContext
    ) -> pb.Connection:
        connection = self._service.complete_authorization(
            current_principal(),
            request.code,
            request.state,
            request.realm_id,
            request.redirect_uri,
            branch_id=request.branch_id,
        )
        return convert.connection_to_proto(connection)

    def GetConnection(self, request: pb.GetConnectionRequest, context: grpc.ServicerContext) -> pb.Connection:
        connection = self._service.get_connection(current_principal(), branch_id=request.branch_id)
        return convert.connection_to_proto(connection)

    def UpdateSettings(self, request: pb.UpdateSettingsRequest, context: grpc.ServicerContext) -> pb.Settings:
        violations: list[FieldViolation] = []
        settings = convert.settings_from_proto(request.settings, violations)
        updated = self._service.update_settings(
            current_principal(),
            settings,
            list(request.update_mask.paths),
            branch_id=request.branch_id,
            conversion_violations=violations,
        )
        return convert.settings_to_proto(updated)

    def Disconnect(self, request: pb.DisconnectRequest, context: grpc.ServicerContext) -> pb.Connection:
        return convert.connection_to_proto(self._service.disconnect(current_principal(), branch_id=request.branch_id))
