// The "limit" of test/bench/api.bench.ts: a grpc-js server that answers
// /hypervisord.v1.HypervisordService/SubmitJob with a constant response, using the
// daemon's own ServiceDefinition (protobuf-es serializers), and does nothing else.
// Prints {"port": N} on stdout once bound; exits on SIGTERM/SIGINT or when stdin closes.
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import * as grpc from "@grpc/grpc-js";
import { ExportFormat, JobState } from "../../gen/hypervisord/v1/job_pb.js";
import { HypervisordService, SubmitJobResponseSchema } from "../../gen/hypervisord/v1/service_pb.js";
import { grpcServiceDefinition } from "../../src/server/grpc-server.ts";

// Shaped like what the daemon answers for the bench's fake job, so that both servers serialize about the same bytes.
const response = create(SubmitJobResponseSchema, {
  job: {
    id: randomUUID(),
    definition: {
      name: "bench?size=0&delayMs=0",
      provider: "fake",
      vm: "bench?size=0&delayMs=0",
      outputDir: "/tmp/hvd-exports-XXXXXX",
      format: ExportFormat.OVF,
      compressionLevel: 6,
      parallelDownloads: 4,
      priority: "normal",
      labels: { bench: "api", n: "123456" },
    },
    state: JobState.QUEUED,
    progress: {},
    maxAttempts: 3,
    createTime: timestampFromMs(Date.now()),
  },
  created: true,
});

const server = new grpc.Server({ "grpc.max_receive_message_length": 16 * 1024 * 1024 });
server.addService(grpcServiceDefinition(HypervisordService), {
  SubmitJob: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => callback(null, response),
});
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`noop-server: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});

const stop = () => {
  server.forceShutdown();
  process.exit(0);
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
// The parent holds our stdin: if it goes away, so do we.
process.stdin.on("end", stop);
process.stdin.resume();
