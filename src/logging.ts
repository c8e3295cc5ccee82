import pino, { type DestinationStream, type Logger, type LoggerOptions } from "pino";

/** Wherever these keys appear in a log record, their values are replaced. */
export const REDACT_PATHS = [
  "password",
  "*.password",
  "*.*.password",
  "secret",
  "*.secret",
  // An Azure connection's (definition.azure.clientSecret, a token request's client_secret).
  "clientSecret",
  "*.clientSecret",
  "*.*.clientSecret",
  "client_secret",
  "*.client_secret",
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "headers.authorization",
  "headers.cookie",
  "*.headers.cookie",
];

export function loggerOptions(level: string): LoggerOptions {
  return {
    level,
    base: { pid: process.pid },
    redact: { paths: REDACT_PATHS, censor: "[REDACTED]" },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
  };
}

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(loggerOptions(level), destination ?? pino.destination({ dest: 1, sync: true }));
}
