// The API suites (gRPC, HTTP/Connect, bad input) once more, every daemon on the PostgreSQL store: the same test
// files, imported with HYPERVISORD_TEST_STORE=postgres (see withTestStore in support/daemon-process.ts).
import { test } from "node:test";
import { postgresSkipReason } from "./support/postgres.ts";

const skip = postgresSkipReason();
if (skip) {
  process.stdout.write(`# skipping the API suites against PostgreSQL: ${skip}\n`);
  test("the API suites against PostgreSQL", { skip }, () => undefined);
} else {
  process.env.HYPERVISORD_TEST_STORE = "postgres";
  await import("./api-grpc.test.ts");
  await import("./api-http.test.ts");
  await import("./api-errors.test.ts");
}
