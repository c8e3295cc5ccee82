// The API client of the page and what comes with it: the API key (kept in session storage only,
// so it is gone with the tab) and the live job stream.
import { createContext, useContext, useEffect, useMemo, useState, useSyncExternalStore, type ReactNode } from "react";
import { createHypervisordClient, type HypervisordClient } from "../index.ts";
import { createLiveJobs, type LiveJobs, type LiveState } from "./live.ts";
import { createTimeline, followLive, type Timeline } from "./timeline.ts";

const KEY_STORAGE = "hypervisord.apiKey";

export interface Session {
  client: HypervisordClient;
  live: LiveJobs;
  /** The last hour of throughput and queue, recorded from `live` (kept across a change of API key). */
  timeline: Timeline;
  /** The daemon's base URL (the page's own directory). */
  baseUrl: string;
  apiKey: string;
  setApiKey(key: string): void;
}

const SessionContext = createContext<Session | undefined>(undefined);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [apiKey, setKey] = useState(() => sessionStorage.getItem(KEY_STORAGE) ?? "");
  const baseUrl = new URL(".", window.location.href).href;
  const client = useMemo(() => createHypervisordClient({ url: baseUrl, apiKey: apiKey || undefined }), [baseUrl, apiKey]);
  const live = useMemo(() => createLiveJobs(client), [client]);
  useEffect(() => () => live.close(), [live]);
  const [timeline] = useState(() => createTimeline());
  useEffect(() => followLive(timeline, live), [timeline, live]);
  const setApiKey = (key: string) => {
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
    setKey(key);
  };
  return <SessionContext.Provider value={{ client, live, timeline, baseUrl, apiKey, setApiKey }}>{children}</SessionContext.Provider>;
}

export function useSession(): Session {
  const session = useContext(SessionContext);
  if (!session) throw new Error("useSession outside SessionProvider");
  return session;
}

export function useClient(): HypervisordClient {
  return useSession().client;
}

export function useLive(): LiveState {
  const { live } = useSession();
  return useSyncExternalStore(live.subscribe, live.getState);
}

/** The timeline; the component re-renders on each of its samples. */
export function useTimeline(): Timeline {
  const { timeline } = useSession();
  useSyncExternalStore(timeline.subscribe, timeline.version);
  return timeline;
}
