"""Generated stubs of the `qbsync.v1` gRPC API; edit proto/qbsync/v1/*.proto and run `make proto`."""
