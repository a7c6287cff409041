// Alerting: rules and their states, alert groups as the alert manager groups them, silences.
import { useCallback, useEffect, useState } from 'react';
import {
  alertGroups,
  createSilence,
  expireSilence,
  rules,
  silences,
  type AlertGroup,
  type AmAlert,
  type Matcher,
  type RuleGroup,
  type Silence,
} from '../api';
import { ErrorMessage, LabelChips, Link, Loading, Section, Tabs } from '../components/common';
import { setQuery, useLocation } from '../router';
import { useCanWrite } from '../session';
import { formatDuration, parseDuration, timeAgo } from '../time';

const TABS = [
  { id: 'alerts', label: 'Alerts' },
  { id: 'rules', label: 'Rules' },
  { id: 'silences', label: 'Silences' },
];

export function Alerting() {
  const location = useLocation();
  const tab = location.query.get('tab') ?? 'alerts';
  const [draft, setDraft] = useState<Matcher[] | null>(null);
  return (
    <>
      <div className="page-head">
        <h1>Alerting</h1>
      </div>
      <Tabs label="Alerting" tabs={TABS} active={tab} onChange={(id) => setQuery({ tab: id })} />
      <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`} className="tabpanel">
        {tab === 'alerts' && (
          <AlertGroups
            onSilence={(alert) => {
              setDraft(Object.entries(alert.labels).map(([name, value]) => ({ name, value, isRegex: false, isEqual: true })));
              setQuery({ tab: 'silences' });
            }}
          />
        )}
        {tab === 'rules' && <Rules />}
        {tab === 'silences' && <Silences draft={draft} onDraftDone={() => setDraft(null)} />}
      </div>
    </>
  );
}

function stateBadge(state: string) {
  return <span className={`badge ${state}`}>{state}</span>;
}

function AlertGroups({ onSilence }: { onSilence: (alert: AmAlert) => void }) {
  const canWrite = useCanWrite();
  const [groups, setGroups] = useState<AlertGroup[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const load = () => alertGroups().then(setGroups, setError);
    load();
    const timer = window.setInterval(load, 10000);
    return () => window.clearInterval(timer);
  }, []);
  if (error) return <ErrorMessage error={error} />;
  if (!groups) return <Loading />;
  const active = groups.filter((g) => g.alerts.length);
  if (!active.length) return <p className="muted">No alerts are firing.</p>;
  return (
    <>
      {active.map((group, index) => {
        const title = Object.entries(group.labels).map(([k, v]) => `${k}=${v}`).join(', ') || 'Not grouped';
        return (
          <section className="card" key={index} aria-label={`Alert group ${title}`}>
            <div className="card-head">
              <h2>
                <LabelChips labels={group.labels} />
              </h2>
              <span className="muted">
                receiver {group.receiver.name} · {group.alerts.length} {group.alerts.length === 1 ? 'alert' : 'alerts'}
              </span>
            </div>
            <ul className="alert-list">
              {group.alerts.map((alert) => (
                <li key={alert.fingerprint} className="alert-item">
                  <div>
                    {stateBadge(alert.status.state === 'active' ? 'firing' : alert.status.state)}{' '}
                    <strong>{alert.labels.alertname}</strong> <span className="muted">since {timeAgo(alert.startsAt)}</span>
                    {alert.annotations.summary && <p className="summary">{alert.annotations.summary}</p>}
                    <LabelChips labels={alert.labels} skip={['alertname', ...Object.keys(group.labels)]} />
                    {alert.annotations.runbook_url && (
                      <a href={alert.annotations.runbook_url} rel="noreferrer" target="_blank">
                        Runbook
                      </a>
                    )}
                  </div>
                  <div className="actions">
                    {canWrite && alert.status.state !== 'suppressed' && (
                      <button type="button" onClick={() => onSilence(alert)} aria-label={`Silence ${alert.labels.alertname}`}>
                        Silence
                      </button>
                    )}
                    {alert.status.silencedBy.length > 0 && <span className="muted">silenced</span>}
                  </div>
                </li>
              ))}
            </ul>
          </section>
        );
      })}
    </>
  );
}

function Rules() {
  const [groups, setGroups] = useState<RuleGroup[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [filter, setFilter] = useState('');
  useEffect(() => {
    rules().then(setGroups, setError);
  }, []);
  if (error) return <ErrorMessage error={error} />;
  if (!groups) return <Loading />;
  if (!groups.length) return <p className="muted">No rule files are loaded. List them under rule_files in the configuration.</p>;
  return (
    <>
      <label className="inline filter">
        <span>Filter rules</span>
        <input type="search" value={filter} onChange={(e) => setFilter(e.target.value)} />
      </label>
      {groups.map((group) => (
        <Section key={`${group.file}/${group.name}`} title={group.name} actions={<span className="muted">{group.file} · every {formatDuration(group.interval)}</span>}>
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Rule</th>
                  <th scope="col">State</th>
                  <th scope="col">Expression</th>
                  <th scope="col">Last evaluation</th>
                </tr>
              </thead>
              <tbody>
                {group.rules
                  .filter((r) => !filter || r.name.toLowerCase().includes(filter.toLowerCase()))
                  .map((rule) => (
                    <tr key={rule.name + rule.query}>
                      <td>
                        <strong>{rule.name}</strong>
                        <div className="muted">{rule.type === 'alerting' ? 'alert' : 'recording rule'}</div>
                      </td>
                      <td>
                        {rule.type === 'alerting' ? stateBadge(rule.state ?? 'inactive') : stateBadge(rule.health)}
                        {rule.health === 'err' && <div className="error">{rule.lastError}</div>}
                        {rule.alerts && rule.alerts.length > 0 && <div className="muted">{rule.alerts.length} active</div>}
                      </td>
                      <td className="code">
                        <Link href={`/explore?tab=metrics&expr=${encodeURIComponent(rule.query)}`}>{rule.query}</Link>
                      </td>
                      <td>{rule.lastEvaluation && !rule.lastEvaluation.startsWith('0001') ? timeAgo(rule.lastEvaluation) : 'never'}</td>
                    </tr>
                  ))}
              </tbody>
            </table>
          </div>
        </Section>
      ))}
    </>
  );
}

function Silences({ draft, onDraftDone }: { draft: Matcher[] | null; onDraftDone: () => void }) {
  const canWrite = useCanWrite();
  const [items, setItems] = useState<Silence[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [showExpired, setShowExpired] = useState(false);
  const reload = useCallback(() => {
    silences().then(setItems, setError);
  }, []);
  useEffect(reload, [reload]);
  const shown = (items ?? []).filter((s) => showExpired || s.status.state !== 'expired');
  return (
    <>
      {canWrite && (<SilenceForm
        key={JSON.stringify(draft)}
        initial={draft}
        onCreated={() => {
          onDraftDone();
          reload();
        }}
      />)}
      <Section
        title="Silences"
        actions={
          <label className="inline">
            <input type="checkbox" checked={showExpired} onChange={(e) => setShowExpired(e.target.checked)} /> Show expired
          </label>
        }
      >
        <ErrorMessage error={error} />
        {!items ? (
          <Loading />
        ) : shown.length === 0 ? (
          <p className="muted">No silences.</p>
        ) : (
          <ul className="alert-list" aria-label="Silences">
            {shown.map((s) => (
              <li key={s.id} className="alert-item">
                <div>
                  {stateBadge(s.status.state)}{' '}
                  <span className="chips">
                    {s.matchers.map((m) => (
                      <span className="chip" key={m.name + m.value}>
                        {m.name}
                        {m.isEqual === false ? '!' : ''}
                        {m.isRegex ? '=~' : '='}
                        {m.value}
                      </span>
                    ))}
                  </span>
                  <p className="summary">
                    {s.comment} <span className="muted">— {s.createdBy}</span>
                  </p>
                  <span className="muted">
                    {s.status.state === 'expired' ? `ended ${timeAgo(s.endsAt)}` : `ends ${timeAgo(s.endsAt)}`}
                  </span>
                </div>
                <div className="actions">
                  {canWrite && s.status.state !== 'expired' && (
                    <button
                      type="button"
                      className="danger"
                      aria-label={`Expire silence ${s.comment}`}
                      onClick={async () => {
                        await expireSilence(s.id).catch(setError);
                        reload();
                      }}
                    >
                      Expire
                    </button>
                  )}
                </div>
              </li>
            ))}
          </ul>
        )}
      </Section>
    </>
  );
}

function SilenceForm({ initial, onCreated }: { initial: Matcher[] | null; onCreated: () => void }) {
  const [matchers, setMatchers] = useState<Matcher[]>(initial ?? [{ name: 'alertname', value: '', isRegex: false, isEqual: true }]);
  const [duration, setDuration] = useState('2h');
  const [createdBy, setCreatedBy] = useState(() => localStorage.getItem('signalroom.user') ?? '');
  const [comment, setComment] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [open, setOpen] = useState(!!initial);

  async function submit() {
    setError(null);
    const seconds = parseDuration(duration);
    if (!(seconds > 0)) return setError(new Error(`Duration “${duration}” is not valid: use e.g. 30m, 2h, 1d.`));
    const now = new Date();
    try {
      await createSilence({
        matchers: matchers.filter((m) => m.name && m.value !== undefined),
        startsAt: now.toISOString(),
        endsAt: new Date(now.getTime() + seconds * 1000).toISOString(),
        createdBy,
        comment,
      });
      localStorage.setItem('signalroom.user', createdBy);
      setComment('');
      setOpen(false);
      onCreated();
    } catch (e) {
      setError(e);
    }
  }

  if (!open)
    return (
      <p>
        <button type="button" className="primary" onClick={() => setOpen(true)}>
          New silence
        </button>
      </p>
    );
  return (
    <section className="card" aria-labelledby="new-silence">
      <h2 id="new-silence">New silence</h2>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <fieldset>
          <legend>Matchers</legend>
          {matchers.map((m, index) => (
            <div className="form-row" key={index}>
              <label>
                <span className="sr-only">Label name {index + 1}</span>
                <input value={m.name} placeholder="label" onChange={(e) => setMatchers(matchers.map((x, i) => (i === index ? { ...x, name: e.target.value } : x)))} />
              </label>
              <label>
                <span className="sr-only">Operator {index + 1}</span>
                <select
                  value={`${m.isEqual === false ? '!' : ''}${m.isRegex ? '~' : '='}`}
                  onChange={(e) =>
                    setMatchers(matchers.map((x, i) => (i === index ? { ...x, isEqual: !e.target.value.startsWith('!'), isRegex: e.target.value.endsWith('~') } : x)))
                  }
                >
                  <option value="=">=</option>
                  <option value="!=">!=</option>
                  <option value="~">=~</option>
                  <option value="!~">!~</option>
                </select>
              </label>
              <label>
                <span className="sr-only">Value {index + 1}</span>
                <input value={m.value} placeholder="value" onChange={(e) => setMatchers(matchers.map((x, i) => (i === index ? { ...x, value: e.target.value } : x)))} />
              </label>
              <button type="button" aria-label={`Remove matcher ${index + 1}`} onClick={() => setMatchers(matchers.filter((_, i) => i !== index))}>
                Remove
              </button>
            </div>
          ))}
          <button type="button" onClick={() => setMatchers([...matchers, { name: '', value: '', isRegex: false, isEqual: true }])}>
            Add matcher
          </button>
        </fieldset>
        <div className="form-row">
          <label>
            Duration <input value={duration} onChange={(e) => setDuration(e.target.value)} size={6} required />
          </label>
          <label>
            Created by <input value={createdBy} onChange={(e) => setCreatedBy(e.target.value)} required />
          </label>
        </div>
        <label htmlFor="silence-comment">Comment</label>
        <textarea id="silence-comment" rows={2} value={comment} onChange={(e) => setComment(e.target.value)} required />
        <ErrorMessage error={error} />
        <div className="form-row">
          <button type="submit" className="primary">
            Create silence
          </button>
          <button type="button" onClick={() => setOpen(false)}>
            Cancel
          </button>
        </div>
      </form>
    </section>
  );
}
