// Inbox: the notifications signalroom's own webhook receiver got (GET /api/sr/inbox), newest
// first, as an on-call person reads them: firing or resolved, which group, which alerts, the
// runbook to follow and how far the escalation has gone.
import { useCallback, useEffect, useState } from 'react';
import { inbox, type InboxNotification, type WebhookAlert } from '../api';
import { ErrorMessage, LabelChips, Loading } from '../components/common';
import { setQuery, useLocation } from '../router';
import { formatTime, timeAgo } from '../time';

const STATUSES = [
  ['', 'All'],
  ['firing', 'Firing'],
  ['resolved', 'Resolved'],
] as const;

/** Labels as strings: the inbox stores any JSON a sender posted. */
function labelsOf(value: unknown): Record<string, string> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
}

/** A payload's alert with string labels, annotations and fields. */
function cleanAlert(value: unknown): WebhookAlert {
  const a = (value && typeof value === 'object' ? value : {}) as Record<string, unknown>;
  const text = (x: unknown) => (typeof x === 'string' ? x : undefined);
  return {
    status: text(a.status),
    labels: labelsOf(a.labels),
    annotations: labelsOf(a.annotations),
    startsAt: text(a.startsAt),
    generatorURL: text(a.generatorURL),
    fingerprint: text(a.fingerprint),
  };
}

/** The highest escalation level ("L2") and its policy among the alerts of a notification. */
function escalationOf(alerts: WebhookAlert[]): { level: string; policy?: string; oncall?: string } | null {
  let best: { level: string; policy?: string; oncall?: string } | null = null;
  for (const alert of alerts) {
    const level = alert.annotations?.escalation_level;
    if (!level) continue;
    if (!best || Number(level.replace(/\D/g, '')) > Number(best.level.replace(/\D/g, '')))
      best = { level, policy: alert.annotations?.escalation_policy, oncall: alert.annotations?.oncall_user };
  }
  return best;
}

/** A runbook link of an alert: its runbook_url, or a runbook annotation or label that is a URL. */
function runbookOf(alert: WebhookAlert): string | null {
  const candidates = [alert.annotations?.runbook_url, alert.annotations?.runbook, alert.labels?.runbook];
  const link = candidates.find((c) => c && (/^https?:\/\//.test(c) || c.startsWith('/')));
  return link ?? null;
}

/** Only http(s) and same-origin links become anchors: a payload is outside input. */
function safeHref(url: string | undefined): string | null {
  if (!url) return null;
  return /^https?:\/\//.test(url) || (url.startsWith('/') && !url.startsWith('//')) ? url : null;
}

export function Inbox() {
  const location = useLocation();
  const status = location.query.get('status') ?? '';
  const [items, setItems] = useState<InboxNotification[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const load = useCallback(() => {
    inbox(200).then(
      (data) => {
        setItems(data);
        setError(null);
      },
      setError,
    );
  }, []);
  useEffect(() => {
    load();
    const timer = window.setInterval(load, 10000);
    return () => window.clearInterval(timer);
  }, [load]);

  const shown = (items ?? []).filter((n) => !status || n.payload.status === status);
  return (
    <>
      <div className="page-head">
        <h1>Inbox</h1>
        <div className="toolbar-group">
          <label htmlFor="inbox-status" className="sr-only">
            Show
          </label>
          <select id="inbox-status" value={status} onChange={(e) => setQuery({ status: e.target.value || undefined })}>
            {STATUSES.map(([value, label]) => (
              <option key={value} value={value}>
                {label}
              </option>
            ))}
          </select>
          <button type="button" onClick={load}>
            Refresh
          </button>
        </div>
      </div>
      <p className="muted">
        Notifications sent to signalroom&apos;s own receiver (a webhook to <code>/api/sr/inbox</code>), newest first.
      </p>
      <ErrorMessage error={error} />
      {!items ? (
        <Loading />
      ) : (
        <>
          <p className="muted" role="status" aria-live="polite">
            {shown.length} {shown.length === 1 ? 'notification' : 'notifications'}
            {status ? ` ${status}` : ''}
          </p>
          {shown.length === 0 ? (
            <p className="muted">
              No notifications yet. Route alerts to a receiver with <code>webhook_configs: [{'{'}url: &apos;http://127.0.0.1:8290/api/sr/inbox&apos;{'}'}]</code>.
            </p>
          ) : (
            <ol className="inbox" aria-label="Notifications, newest first">
              {shown.map((n) => (
                <Notification key={n.id} notification={n} />
              ))}
            </ol>
          )}
        </>
      )}
    </>
  );
}

function Notification({ notification }: { notification: InboxNotification }) {
  const p = notification.payload;
  const alerts = Array.isArray(p.alerts) ? p.alerts.map(cleanAlert) : [];
  const state = typeof p.status === 'string' ? p.status : 'unknown';
  const groupLabels = labelsOf(p.groupLabels);
  const group = Object.entries(groupLabels)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
  const escalation = escalationOf(alerts);
  const received = new Date(notification.receivedAt * 1000);
  const headingId = `inbox-${notification.id}`;
  return (
    <li>
      <article className={`card notification ${state}`} aria-labelledby={headingId}>
        <header className="card-head">
          <h2 id={headingId}>
            <span className={`badge ${state}`}>{state}</span> {group || (typeof p.groupKey === 'string' ? p.groupKey : 'Notification')}
          </h2>
          <span className="muted">
            <time dateTime={received.toISOString()} title={formatTime(notification.receivedAt)}>
              {timeAgo(received.toISOString())}
            </time>
          </span>
        </header>
        <dl className="facts">
          <div>
            <dt>Receiver</dt>
            <dd>{typeof p.receiver === 'string' ? p.receiver : '—'}</dd>
          </div>
          <div>
            <dt>Group labels</dt>
            <dd>{Object.keys(groupLabels).length ? <LabelChips labels={groupLabels} /> : '—'}</dd>
          </div>
          <div>
            <dt>Escalation</dt>
            <dd>
              {escalation ? (
                <>
                  <span className="badge escalation">Level {escalation.level.replace(/^L/, '')}</span>
                  {escalation.policy && <span className="muted"> policy {escalation.policy}</span>}
                  {escalation.oncall && <span className="muted"> · on call {escalation.oncall}</span>}
                </>
              ) : (
                'not escalated'
              )}
            </dd>
          </div>
        </dl>
        <ul className="alert-list" aria-label={`Alerts of ${group || 'this notification'}`}>
          {alerts.map((alert, index) => {
            const name = alert.labels?.alertname ?? 'alert';
            const runbook = safeHref(runbookOf(alert) ?? undefined);
            const source = safeHref(alert.generatorURL);
            const summary = alert.annotations?.summary ?? alert.annotations?.description;
            return (
              <li key={alert.fingerprint ?? index} className="alert-item">
                <div>
                  <strong>{name}</strong> <span className={`badge ${alert.status ?? state}`}>{alert.status ?? state}</span>
                  {summary && <p className="summary">{summary}</p>}
                  <LabelChips labels={alert.labels ?? {}} skip={['alertname']} />
                </div>
                <div className="alert-meta">
                  {alert.startsAt && <span className="muted">since {formatTime(Date.parse(alert.startsAt) / 1000)}</span>}
                  {runbook && (
                    <a href={runbook} target="_blank" rel="noreferrer" aria-label={`Runbook for ${name}`}>
                      Runbook
                    </a>
                  )}
                  {source && (
                    <a href={source} target="_blank" rel="noreferrer" aria-label={`Source of ${name}`}>
                      Source
                    </a>
                  )}
                </div>
              </li>
            );
          })}
        </ul>
        {typeof p.truncatedAlerts === 'number' && p.truncatedAlerts > 0 && <p className="muted">and {p.truncatedAlerts} more alerts</p>}
      </article>
    </li>
  );
}
