"""The gRPC adapter: drives the core from the `qbsync.v1` API.

`convert` maps protobuf messages to and from core objects, `status` and `errors` turn domain errors
into `google.rpc.Status`, `auth` finds the calling principal, `servicer` implements SyncService and
`server` puts it all on a port with health checking, reflection and a graceful stop.
"""
