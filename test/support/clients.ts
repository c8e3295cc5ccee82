import { create, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { HypervisordService } from "../../gen/hypervisord/v1/service_pb.js";
import { grpcServiceDefinition } from "../../src/server/grpc-server.ts";

type Service = typeof HypervisordService;
type Methods = Service["method"];
type In<K extends keyof Methods> = MessageInitShape<Methods[K]["input"]>;
type Out<K extends keyof Methods> = MessageShape<Methods[K]["output"]>;

/** A grpc-js client of HypervisordService, built from the generated descriptors like the server. */
export function createGrpcJsClient(address: string, service: DescService = HypervisordService) {
  const Ctor = grpc.makeGenericClientConstructor(grpcServiceDefinition(service), service.name);
  const client = new Ctor(address, grpc.credentials.createInsecure()) as unknown as Record<string, (...args: unknown[]) => unknown> & grpc.Client;
  const method = (localName: string): DescMethod => service.methods.find((m) => m.localName === localName)!;
  return {
    raw: client,
    unary<K extends keyof Methods & string>(name: K, request: In<K>, options: grpc.CallOptions = {}): Promise<Out<K>> {
      const m = method(name);
      return new Promise((resolve, reject) => {
        client[m.name]!.call(client, create(m.input, request as never), new grpc.Metadata(), options, (err: grpc.ServiceError | null, response: Out<K>) =>
          err ? reject(err) : resolve(response));
      });
    },
    stream<K extends keyof Methods & string>(name: K, request: In<K>, options: grpc.CallOptions = {}): grpc.ClientReadableStream<Out<K>> {
      const m = method(name);
      return client[m.name]!.call(client, create(m.input, request as never), new grpc.Metadata(), options) as grpc.ClientReadableStream<Out<K>>;
    },
    close: () => client.close(),
  };
}

export type GrpcJsClient = ReturnType<typeof createGrpcJsClient>;

/** connect-node clients of the daemon's HTTP listener, one per protocol, and of its gRPC listener. */
export function connectClients(httpUrl: string, grpcAddress: string): Record<string, Client<Service>> {
  return {
    connectJson: createClient(HypervisordService, createConnectTransport({ baseUrl: httpUrl, httpVersion: "1.1", useBinaryFormat: false })),
    connectBinaryH2: createClient(HypervisordService, createConnectTransport({ baseUrl: httpUrl, httpVersion: "2", useBinaryFormat: true })),
    grpcWeb: createClient(HypervisordService, createGrpcWebTransport({ baseUrl: httpUrl, httpVersion: "1.1" })),
    grpcOnHttpListener: createClient(HypervisordService, createGrpcTransport({ baseUrl: httpUrl })),
    grpcOnGrpcListener: createClient(HypervisordService, createGrpcTransport({ baseUrl: `http://${grpcAddress}` })),
  };
}

/** Connect unary call with plain fetch and JSON, as any HTTP client would. */
export async function postJson(httpUrl: string, method: string, body: unknown, headers: Record<string, string> = {}) {
  const response = await fetch(`${httpUrl}/hypervisord.v1.HypervisordService/${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? (JSON.parse(text) as Record<string, any>) : {} };
}

/** Connect server-streaming call with plain fetch: enveloped JSON messages, the last one the end-of-stream. */
export async function* streamJson(httpUrl: string, method: string, body: unknown, signal?: AbortSignal): AsyncGenerator<Record<string, any>> {
  const json = Buffer.from(JSON.stringify(body));
  const envelope = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), json]);
  envelope.writeUInt32BE(json.length, 1);
  const response = await fetch(`${httpUrl}/hypervisord.v1.HypervisordService/${method}`, {
    method: "POST", headers: { "content-type": "application/connect+json" }, body: envelope, signal,
  });
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  let buffered = Buffer.alloc(0);
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 5 && buffered.length >= 5 + buffered.readUInt32BE(1)) {
      const flags = buffered[0]!;
      const length = buffered.readUInt32BE(1);
      const message = JSON.parse(buffered.subarray(5, 5 + length).toString()) as Record<string, any>;
      buffered = buffered.subarray(5 + length);
      if (flags & 0b10) {
        if (message.error) throw Object.assign(new Error(message.error.message), { code: message.error.code });
        return;
      }
      yield message;
    }
  }
}
