import { StrictMode, useCallback, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { ApiError, currentSession, logout, type SessionInfo } from './api';
import { ErrorMessage, Link, Loading } from './components/common';
import { Alerting } from './pages/Alerting';
import { Analytics } from './pages/Analytics';
import { Login } from './pages/Login';
import { SessionContext } from './session';
import { DashboardList, DashboardView } from './pages/Dashboards';
import { Explore } from './pages/Explore';
import { Inbox } from './pages/Inbox';
import { useLocation } from './router';
import './styles.css';

const NAV = [
  { href: '/dashboards', label: 'Dashboards' },
  { href: '/explore', label: 'Explore' },
  { href: '/analytics', label: 'Analytics' },
  { href: '/alerting', label: 'Alerting' },
  { href: '/inbox', label: 'Inbox' },
];

function Page({ path }: { path: string }) {
  const dashboard = /^\/d\/([^/]+)/.exec(path);
  if (dashboard) return <DashboardView uid={decodeURIComponent(dashboard[1])} />;
  if (path === '/' || path.startsWith('/dashboards')) return <DashboardList />;
  if (path.startsWith('/explore')) return <Explore />;
  if (path.startsWith('/alerting')) return <Alerting />;
  if (path.startsWith('/analytics')) return <Analytics />;
  if (path.startsWith('/inbox')) return <Inbox />;
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

type SessionState = { kind: 'loading' } | { kind: 'login' } | { kind: 'error'; error: unknown } | { kind: 'ready'; session: SessionInfo };

function App() {
  const { path } = useLocation();
  const [state, setState] = useState<SessionState>({ kind: 'loading' });
  const load = useCallback(() => {
    currentSession().then(
      (session) => setState({ kind: 'ready', session }),
      (error) => setState(error instanceof ApiError && error.status === 401 ? { kind: 'login' } : { kind: 'error', error }),
    );
  }, []);
  useEffect(() => {
    load();
    const unauthorized = () => setState({ kind: 'login' });
    window.addEventListener('sr:unauthorized', unauthorized);
    return () => window.removeEventListener('sr:unauthorized', unauthorized);
  }, [load]);
  const session = state.kind === 'ready' ? state.session : null;
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
        {session?.authEnabled && (
          <div className="user">
            <span>
              {session.name}
              {!session.scopes.includes('write') && <span className="chip">read-only</span>}
            </span>
            <button
              type="button"
              onClick={async () => {
                await logout().catch(() => undefined);
                setState({ kind: 'login' });
              }}
            >
              Log out
            </button>
          </div>
        )}
      </header>
      <main id="main" tabIndex={-1}>
        {state.kind === 'loading' ? (
          <Loading />
        ) : state.kind === 'login' ? (
          <Login onLogin={(s) => setState({ kind: 'ready', session: s })} />
        ) : state.kind === 'error' ? (
          <ErrorMessage error={state.error} />
        ) : (
          <SessionContext.Provider value={session}>
            <Page path={path} />
          </SessionContext.Provider>
        )}
      </main>
    </>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
