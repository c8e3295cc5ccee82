// Hash routing (#/jobs/ID?state=failed): the daemon serves one page at `/`, and a reload or a
// bookmark lands on the same view without the server knowing the dashboard's paths.
import { useEffect, useState } from "react";

export interface Route {
  /** "#/jobs/abc" -> ["jobs", "abc"]; "#/" -> []. */
  path: string[];
  params: URLSearchParams;
}

function currentRoute(): Route {
  const hash = window.location.hash.replace(/^#\/?/, "");
  const [path = "", query = ""] = hash.split("?", 2);
  return { path: path.split("/").filter(Boolean).map(decodeURIComponent), params: new URLSearchParams(query) };
}

export function useRoute(): Route {
  const [route, setRoute] = useState(currentRoute);
  useEffect(() => {
    const onChange = () => setRoute(currentRoute());
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}

/** "#/jobs?state=failed" from a path and the non-empty params. */
export function href(path: string, params: Record<string, string | undefined> = {}): string {
  const query = new URLSearchParams(Object.entries(params).filter((e): e is [string, string] => !!e[1])).toString();
  return `#${path}${query ? `?${query}` : ""}`;
}

export function navigate(path: string, params?: Record<string, string | undefined>): void {
  window.location.hash = href(path, params);
}
