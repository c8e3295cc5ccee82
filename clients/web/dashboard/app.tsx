import { useEffect, type ReactNode } from "react";
import { ApiKeyForm } from "./components/api-key-form.tsx";
import { ConnectionBanner } from "./components/connection-banner.tsx";
import { BatchPage } from "./pages/batch-page.tsx";
import { BatchesPage } from "./pages/batches-page.tsx";
import { ExportPage } from "./pages/export-page.tsx";
import { JobPage } from "./pages/job-page.tsx";
import { JobsPage } from "./pages/jobs-page.tsx";
import { OverviewPage } from "./pages/overview-page.tsx";
import { SchedulesPage } from "./pages/schedules-page.tsx";
import { WebhooksPage } from "./pages/webhooks-page.tsx";
import { useRoute, type Route } from "./router.ts";
import { useLive, useSession } from "./session.tsx";

const NAV = [
  { path: "", label: "Overview" },
  { path: "jobs", label: "Jobs" },
  { path: "batches", label: "Batches" },
  { path: "export", label: "Export & convert" },
  { path: "schedules", label: "Schedules" },
  { path: "webhooks", label: "Webhooks" },
];

function page(route: Route): { title: string; body: ReactNode } {
  const [section = "", id] = route.path;
  switch (section) {
    case "":
      return { title: "Overview", body: <OverviewPage /> };
    case "jobs":
      return id ? { title: "Job", body: <JobPage jobId={id} /> } : { title: "Jobs", body: <JobsPage params={route.params} /> };
    case "batches":
      return id ? { title: "Batch", body: <BatchPage batchId={id} /> } : { title: "Batches", body: <BatchesPage params={route.params} /> };
    case "export":
      return { title: "Export & convert", body: <ExportPage params={route.params} /> };
    case "schedules":
      return { title: "Schedules", body: <SchedulesPage /> };
    case "webhooks":
      return { title: "Webhooks", body: <WebhooksPage /> };
    default:
      return { title: "Not found", body: <p>There is no page “{route.path.join("/")}”. <a href="#/">Go to the overview.</a></p> };
  }
}

export function App() {
  const route = useRoute();
  const live = useLive();
  const { apiKey, setApiKey } = useSession();
  const { title, body } = page(route);
  useEffect(() => {
    document.title = `${title} · hypervisord`;
  }, [title]);
  const section = route.path[0] ?? "";
  return (
    <>
      <a className="skip-link" href="#main">Skip to content</a>
      <header className="topbar">
        <a className="brand" href="#/">hypervisord</a>
        <nav aria-label="Main">
          <ul>
            {NAV.map((item) => (
              <li key={item.path}>
                <a href={`#/${item.path}`} aria-current={section === item.path ? "page" : undefined}>{item.label}</a>
              </li>
            ))}
          </ul>
        </nav>
        <span className={`link-status link-${live.status}`} role="status" aria-live="polite">{linkText(live.status)}</span>
        {apiKey && <button type="button" className="link-button" onClick={() => setApiKey("")}>Forget API key</button>}
      </header>
      <ConnectionBanner />
      <main id="main" tabIndex={-1}>
        {live.status === "unauthenticated" ? <ApiKeyForm /> : body}
      </main>
    </>
  );
}

function linkText(status: string): string {
  switch (status) {
    case "live": return "● live";
    case "connecting": return "connecting…";
    case "reconnecting": return "○ offline";
    case "unauthenticated": return "sign-in needed";
    default: return "○ no live updates";
  }
}
