// A Node.js CRM service calling qbsync: SyncPayment, then WatchSyncJob until the job is done.
// Usage: node client.js TARGET API_KEY PROTO_ROOT GOOGLE_PROTOS_ROOT WELL_KNOWN_PROTOS_ROOT
// Prints one JSON line: the finished SyncJob.
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [target, apiKey, protoRoot, googleRoot, wellKnownRoot] = process.argv.slice(2);
const definition = protoLoader.loadSync("qbsync/v1/sync_service.proto", {
  includeDirs: [protoRoot, googleRoot, wellKnownRoot],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
});
const qbsync = grpc.loadPackageDefinition(definition).qbsync.v1;
const client = new qbsync.SyncService(target, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.add("authorization", `Bearer ${apiKey}`);

const now = { seconds: Math.floor(Date.now() / 1000), nanos: 0 };
const request = {
  opportunity: {
    opportunity_id: "node-opp-1",
    number: "2001",
    customer: { customer_id: "node-cust-1", first_name: "Zoë", last_name: "Łukasz", email: "zoe@example.com" },
  },
  payment: {
    payment_id: "node-pay-1",
    amount: { currency_code: "USD", units: "250", nanos: 500000000 },
    method: "PAYMENT_METHOD_CHECK",
    received_time: now,
    refunds: [{ refund_id: "node-ref-1", amount: { currency_code: "USD", units: "20" }, refunded_time: now }],
  },
  request_id: "node-first-call",
};

client.SyncPayment(request, metadata, { deadline: Date.now() + 10000 }, (err, job) => {
  if (err) {
    console.error(`SyncPayment failed: ${err.code} ${err.details}`);
    process.exit(1);
  }
  let last = job;
  const stream = client.WatchSyncJob({ name: job.name }, metadata);
  stream.on("data", (update) => { last = update; });
  stream.on("error", (e) => { console.error(`WatchSyncJob failed: ${e.code} ${e.details}`); process.exit(1); });
  stream.on("end", () => { console.log(JSON.stringify(last)); process.exit(0); });
});
