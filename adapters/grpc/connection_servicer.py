"""`qbsync.v1.ConnectionService` over the core's ConnectionService use cases (permission `admin`).

As in SyncServicer, a request whose conversion found problems is rejected only after the permission
check, so a caller without `admin` learns nothing from bad input.
"""

from __future__ import annotations

import grpc

from adapters.grpc import connection_convert as convert
from adapters.grpc.auth import current_principal
from adapters.grpc.servicer import merge_violations
from core.connection_rules import check_settings_update
from core.connections_service import ConnectionService
from core.domain import Permission, Principal
from core.errors import FieldViolation, ValidationError
from core.service import require
from qbsync.v1 import connection_service_pb2 as pb
from qbsync.v1 import connection_service_pb2_grpc


class ConnectionServicer(connection_service_pb2_grpc.ConnectionServiceServicer):
    def __init__(self, service: ConnectionService) -> None:
        self._service = service

    def GetAuthorizationUrl(
        self, request: pb.GetAuthorizationUrlRequest, context: grpc.ServicerContext
    ) -> pb.GetAuthorizationUrlResponse:
        principal = current_principal()
        violations: list[FieldViolation] = []
        environment = convert.environment_from_proto(request.environment, violations)
        _reject(principal, violations)
        url, state = self._service.get_authorization_url(principal, request.redirect_uri, environment)
        return pb.GetAuthorizationUrlResponse(authorization_url=url, state=state)

    def CompleteAuthorization(
        self, request: pb.CompleteAuthorizationRequest, context: grpc.ServicerContext
    ) -> pb.Connection:
        connection = self._service.complete_authorization(
            current_principal(), request.code, request.state, request.realm_id, request.redirect_uri
        )
        return convert.connection_to_proto(connection)

    def GetConnection(self, request: pb.GetConnectionRequest, context: grpc.ServicerContext) -> pb.Connection:
        return convert.connection_to_proto(self._service.get_connection(current_principal()))

    def UpdateSettings(self, request: pb.UpdateSettingsRequest, context: grpc.ServicerContext) -> pb.Settings:
        principal = current_principal()
        violations: list[FieldViolation] = []
        settings = convert.settings_from_proto(request.settings, violations)
        mask = list(request.update_mask.paths)
        if violations:  # report the core's findings too: every offending field at once
            _reject(principal, merge_violations(violations, check_settings_update(settings, mask)))
        updated = self._service.update_settings(principal, settings, mask)
        return convert.settings_to_proto(updated)

    def Disconnect(self, request: pb.DisconnectRequest, context: grpc.ServicerContext) -> pb.Connection:
        return convert.connection_to_proto(self._service.disconnect(current_principal()))


def _reject(principal: Principal, violations: list[FieldViolation]) -> None:
    if violations:
        require(principal, Permission.ADMIN)
        raise ValidationError(violations)
