/**
 * --server / HYPERVISORD_ADDR as the client takes it. A bare host:port means gRPC, as grpcurl users
 * type it (the node client reads a bare host:port as http://, which against the gRPC port fails with
 * "Parse Error: Expected HTTP/"). http(s):// stays Connect, grpc(s):// gRPC.
 */
export function serverUrl(value: string): string {
  const trimmed = value.trim();
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(trimmed) ? trimmed : `grpc://${trimmed}`;
}
