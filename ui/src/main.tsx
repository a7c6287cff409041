import { StrictMode, useEffect } from 'react';
import { createRoot } from 'react-dom/client';
import { Link } from './components/common';
import { Alerting } from './pages/Alerting';
import { DashboardList, DashboardView } from './pages/Dashboards';
import { Explore } from './pages/Explore';
import { useLocation } from './router';
import './styles.css';

const NAV = [
  { href: '/dashboards', label: 'Dashboards' },
  { href: '/explore', label: 'Explore' },
  { href: '/alerting', label: 'Alerting' },
];

function Page({ path }: { path: string }) {
  const dashboard = /^\/d\/([^/]+)/.exec(path);
  if (dashboard) return <DashboardView uid={decodeURIComponent(dashboard[1])} />;
  if (path === '/' || path.startsWith('/dashboards')) return <DashboardList />;
  if (path.startsWith('/explore')) return <Explore />;
  if (path.startsWith('/alerting')) return <Alerting />;
  return (
    <>
      <h1>Page not found</h1>
      <p>
        <Link href="/dashboards">Go to the dashboards</Link>
      </p>
    </>
  );
}

function titleOf(path: string): string {
  const item = NAV.find((n) => path.startsWith(n.href));
  if (path.startsWith('/d/')) return 'Dashboard';
  return item?.label ?? 'Dashboards';
}

function App() {
  const { path } = useLocation();
  const section = path.startsWith('/d/') ? '/dashboards' : path === '/' ? '/dashboards' : path;
  useEffect(() => {
    document.title = `${titleOf(path)} · signalroom`;
    // Move focus to the page's heading after client-side navigation, for screen readers.
    document.getElementById('main')?.focus({ preventScroll: true });
  }, [path]);
  return (
    <>
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <Link href="/dashboards" className="brand" aria-label="signalroom home">
          <img src="/favicon.svg" alt="" width={24} height={24} />
          <span>signalroom</span>
        </Link>
        <nav aria-label="Main">
          <ul>
            {NAV.map((item) => (
              <li key={item.href}>
                <Link href={item.href} aria-current={section.startsWith(item.href) ? 'page' : undefined}>
                  {item.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
      </header>
      <main id="main" tabIndex={-1}>
        <Page path={path} />
      </main>
    </>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
