// Product analytics over captured events: trends, funnels, retention and active users.
import { useEffect, useMemo, useState, type ReactNode } from 'react';
import type { EChartsCoreOption } from 'echarts/core';
import {
  analytics,
  eventNames,
  type ActiveUsersData,
  type FunnelData,
  type RetentionData,
  type TrendsData,
} from '../api';
import { Chart } from '../components/Chart';
import { ErrorMessage, Loading, Tabs } from '../components/common';
import { setQuery, useLocation } from '../router';

const TABS = [
  { id: 'trends', label: 'Trends' },
  { id: 'funnels', label: 'Funnels' },
  { id: 'retention', label: 'Retention' },
  { id: 'active', label: 'Active users' },
];
const RANGES = [
  { value: '-24h', label: 'Last 24 hours' },
  { value: '-7d', label: 'Last 7 days' },
  { value: '-14d', label: 'Last 14 days' },
  { value: '-30d', label: 'Last 30 days' },
  { value: '-90d', label: 'Last 90 days' },
];

const PERIOD_MS: Record<string, number> = { day: 86_400_000, week: 7 * 86_400_000, month: 28 * 86_400_000 };
const percent = (value: number) => `${(value * 100).toFixed(1)}%`;
const shortDate = (iso: string) => iso.replace(/T00:00:00(\+00:00)?Z?$/, '').replace(/:00(\+00:00)?Z$/, '').replace('T', ' ');

export function Analytics() {
  const location = useLocation();
  const tab = location.query.get('tab') ?? 'trends';
  const from = location.query.get('from') ?? '-7d';
  const [events, setEvents] = useState<string[] | null>(null);
  useEffect(() => {
    // No events yet means no table to ask: an empty picker, not an error.
    eventNames().then(setEvents, () => setEvents([]));
  }, []);
  return (
    <>
      <div className="page-head">
        <h1>Analytics</h1>
        <label className="inline">
          Date range
          <select value={from} onChange={(e) => setQuery({ from: e.target.value })}>
            {RANGES.map((r) => (
              <option key={r.value} value={r.value}>
                {r.label}
              </option>
            ))}
          </select>
        </label>
      </div>
      <Tabs label="Analysis" tabs={TABS} active={tab} onChange={(id) => setQuery({ tab: id })} />
      <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`} className="tabpanel">
        {!events ? (
          <Loading label="Loading event names…" />
        ) : events.length === 0 ? (
          <p className="muted">
            No events captured yet. Send some with PostHog's <code>POST /batch</code> or <code>POST /api/sr/events</code>.
          </p>
        ) : tab === 'funnels' ? (
          <Funnels events={events} from={from} />
        ) : tab === 'retention' ? (
          <Retention events={events} from={from} />
        ) : tab === 'active' ? (
          <ActiveUsers events={events} from={from} />
        ) : (
          <Trends events={events} from={from} />
        )}
      </div>
    </>
  );
}

/** Runs ``load`` whenever ``key`` changes; the result, the error and whether it is loading. */
function useQuery<T>(key: string, load: (signal: AbortSignal) => Promise<T>) {
  const [state, setState] = useState<{ data?: T; error?: unknown; loading: boolean }>({ loading: true });
  useEffect(() => {
    const controller = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    load(controller.signal).then(
      (data) => setState({ data, loading: false }),
      (error) => !controller.signal.aborted && setState({ error, loading: false }),
    );
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return state;
}

function Field({ id, label, children }: { id: string; label: string; children: ReactNode }) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children}
    </div>
  );
}

function EventSelect({ id, events, value, onChange, any }: { id: string; events: string[]; value: string; onChange: (v: string) => void; any?: string }) {
  return (
    <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
      {any !== undefined && <option value="">{any}</option>}
      {events.map((e) => (
        <option key={e} value={e}>
          {e}
        </option>
      ))}
    </select>
  );
}

function Result<T>({ state, children }: { state: { data?: T; error?: unknown; loading: boolean }; children: (data: T) => ReactNode }) {
  if (state.error) return <ErrorMessage error={state.error} />;
  if (!state.data) return <Loading />;
  return (
    <div aria-busy={state.loading} className="analytics-result">
      {children(state.data)}
    </div>
  );
}

// --- trends ------------------------------------------------------------------------------------

function Trends({ events, from }: { events: string[]; from: string }) {
  const [event, setEvent] = useState(events[0]);
  const [math, setMath] = useState('total');
  const [property, setProperty] = useState('');
  const [interval, setBucket] = useState(from === '-24h' ? 'hour' : 'day');
  const [breakdown, setBreakdown] = useState('');
  const needsProperty = math === 'sum' || math === 'avg';
  const body = {
    series: [{ event, math, property: needsProperty ? property || undefined : undefined }],
    interval,
    date_from: from,
    breakdown: breakdown.trim() || undefined,
  };
  const key = JSON.stringify(body);
  const state = useQuery<TrendsData>(needsProperty && !property ? '' : key, (signal) =>
    needsProperty && !property ? Promise.reject(new Error('Name the property to add up.')) : analytics<TrendsData>('trends', body, signal),
  );
  const option = useMemo<EChartsCoreOption | null>(() => {
    const data = state.data;
    if (!data?.result.length) return null;
    return {
      grid: { left: 8, right: 16, top: 16, bottom: 48, containLabel: true },
      tooltip: { trigger: 'axis', confine: true },
      legend: { type: 'scroll', bottom: 0 },
      xAxis: { type: 'category', data: data.result[0].labels.map(shortDate) },
      yAxis: { type: 'value' },
      series: data.result.map((r) => ({
        name: r.breakdown_value ?? r.event,
        type: 'line',
        data: r.data,
        showSymbol: r.data.length < 40,
      })),
    };
  }, [state.data]);
  return (
    <section className="card" aria-labelledby="trends-title">
      <h2 id="trends-title">Trends</h2>
      <form className="query-form" onSubmit={(e) => e.preventDefault()}>
        <Field id="trend-event" label="Event">
          <EventSelect id="trend-event" events={events} value={event} onChange={setEvent} />
        </Field>
        <Field id="trend-math" label="Measure">
          <select id="trend-math" value={math} onChange={(e) => setMath(e.target.value)}>
            <option value="total">Total count</option>
            <option value="dau">Unique users</option>
            <option value="sum">Sum of a property</option>
            <option value="avg">Average of a property</option>
          </select>
        </Field>
        {needsProperty && (
          <Field id="trend-property" label="Property">
            <input id="trend-property" value={property} onChange={(e) => setProperty(e.target.value)} placeholder="revenue" />
          </Field>
        )}
        <Field id="trend-interval" label="Interval">
          <select id="trend-interval" value={interval} onChange={(e) => setBucket(e.target.value)}>
            {['hour', 'day', 'week', 'month'].map((i) => (
              <option key={i}>{i}</option>
            ))}
          </select>
        </Field>
        <Field id="trend-breakdown" label="Breakdown by property">
          <input id="trend-breakdown" value={breakdown} onChange={(e) => setBreakdown(e.target.value)} placeholder="e.g. $browser" />
        </Field>
      </form>
      <Result state={state}>
        {(data) => {
          const total = data.result.reduce((sum, r) => sum + r.count, 0);
          return (
            <>
              <p className="big-number" role="status">
                {Number.isInteger(total) ? total : total.toFixed(2)} <span className="muted">in total</span>
              </p>
              {option && (
                <Chart
                  option={option}
                  height={300}
                  summary={`Line chart of ${event} per ${interval}: ${data.result
                    .slice(0, 5)
                    .map((r) => `${r.breakdown_value ?? r.event} ${r.count}`)
                    .join(', ')}`}
                />
              )}
              {data.result.length > 1 && (
                <table className="compact">
                  <caption className="sr-only">Totals by breakdown value</caption>
                  <thead>
                    <tr>
                      <th scope="col">{breakdown}</th>
                      <th scope="col" className="num">
                        Total
                      </th>
                    </tr>
                  </thead>
                  <tbody>
                    {data.result.map((r) => (
                      <tr key={String(r.breakdown_value)}>
                        <td>{r.breakdown_value ?? '(none)'}</td>
                        <td className="num">{r.count}</td>
                      </tr>
                    ))}
                  </tbody>
                </table>
              )}
            </>
          );
        }}
      </Result>
    </section>
  );
}

// --- funnels -----------------------------------------------------------------------------------

function Funnels({ events, from }: { events: string[]; from: string }) {
  const [steps, setSteps] = useState<string[]>(() => events.slice(0, Math.min(3, events.length)));
  const [order, setOrder] = useState('ordered');
  const [windowDays, setWindowDays] = useState(14);
  const body = { steps, order, window_days: windowDays, date_from: from };
  const state = useQuery<FunnelData>(JSON.stringify(body), (signal) =>
    steps.length < 2 ? Promise.reject(new Error('A funnel needs at least two steps.')) : analytics<FunnelData>('funnels', body, signal),
  );
  const option = useMemo<EChartsCoreOption | null>(() => {
    const data = state.data;
    if (!data?.steps.length) return null;
    return {
      grid: { left: 8, right: 16, top: 28, bottom: 8, containLabel: true },
      tooltip: { trigger: 'axis', confine: true },
      xAxis: { type: 'category', data: data.steps.map((s) => `${s.index + 1}. ${s.event}`), axisLabel: { interval: 0, overflow: 'truncate', width: 140 } },
      yAxis: { type: 'value', name: 'users' },
      series: [
        {
          name: 'Converted',
          type: 'bar',
          stack: 'funnel',
          data: data.steps.map((s) => s.count),
          label: { show: true, position: 'top', formatter: (p: { dataIndex: number }) => percent(data.steps[p.dataIndex].conversion_from_first) },
        },
        { name: 'Dropped off', type: 'bar', stack: 'funnel', data: data.steps.map((s) => s.dropped_off), itemStyle: { color: '#f4b8bf' } },
      ],
    };
  }, [state.data]);
  return (
    <section className="card" aria-labelledby="funnel-title">
      <h2 id="funnel-title">Funnel</h2>
      <form className="query-form" onSubmit={(e) => e.preventDefault()}>
        <fieldset>
          <legend>Steps</legend>
          <ol className="steps">
            {steps.map((step, index) => (
              <li key={index}>
                <label htmlFor={`funnel-step-${index}`} className="sr-only">
                  Step {index + 1}
                </label>
                <EventSelect id={`funnel-step-${index}`} events={events} value={step} onChange={(v) => setSteps(steps.map((s, i) => (i === index ? v : s)))} />
                <button type="button" aria-label={`Remove step ${index + 1}`} onClick={() => setSteps(steps.filter((_, i) => i !== index))} disabled={steps.length <= 2}>
                  ×
                </button>
              </li>
            ))}
          </ol>
          <button type="button" onClick={() => setSteps([...steps, events[0]])}>
            Add step
          </button>
        </fieldset>
        <Field id="funnel-order" label="Step order">
          <select id="funnel-order" value={order} onChange={(e) => setOrder(e.target.value)}>
            <option value="ordered">Ordered (other events may happen between)</option>
            <option value="strict">Strict (no other events between)</option>
            <option value="unordered">Any order</option>
          </select>
        </Field>
        <Field id="funnel-window" label="Conversion window (days)">
          <input id="funnel-window" type="number" min={1} max={365} value={windowDays} onChange={(e) => setWindowDays(Math.max(1, Number(e.target.value) || 1))} />
        </Field>
      </form>
      <Result state={state}>
        {(data) => (
          <>
            <p className="big-number" role="status">
              {percent(data.conversion_rate)} <span className="muted">converted from first to last step</span>
            </p>
            {option && <Chart option={option} height={300} summary={`Funnel: ${data.steps.map((s) => `${s.event} ${s.count} users`).join(', ')}`} />}
            <table className="compact">
              <caption className="sr-only">Funnel steps</caption>
              <thead>
                <tr>
                  <th scope="col">Step</th>
                  <th scope="col" className="num">Users</th>
                  <th scope="col" className="num">Conversion</th>
                  <th scope="col" className="num">From previous</th>
                  <th scope="col" className="num">Dropped off</th>
                  <th scope="col" className="num">Median time</th>
                </tr>
              </thead>
              <tbody>
                {data.steps.map((s) => (
                  <tr key={s.index}>
                    <td>
                      {s.index + 1}. {s.event}
                    </td>
                    <td className="num">{s.count}</td>
                    <td className="num">{percent(s.conversion_from_first)}</td>
                    <td className="num">{s.index ? percent(s.conversion_from_previous) : '—'}</td>
                    <td className="num">{s.index ? s.dropped_off : '—'}</td>
                    <td className="num">{s.median_time_to_convert_s === null ? '—' : `${Math.round(s.median_time_to_convert_s)} s`}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </>
        )}
      </Result>
    </section>
  );
}

// --- retention ---------------------------------------------------------------------------------

function Retention({ events, from }: { events: string[]; from: string }) {
  const [target, setTarget] = useState(events[0]);
  const [returning, setReturning] = useState('');
  const [period, setPeriod] = useState('day');
  const [periods, setPeriods] = useState(7);
  const body = { target_event: target, returning_event: returning || undefined, period, periods, date_from: from };
  const state = useQuery<RetentionData>(JSON.stringify(body), (signal) => analytics<RetentionData>('retention', body, signal));
  return (
    <section className="card" aria-labelledby="retention-title">
      <h2 id="retention-title">Retention</h2>
      <form className="query-form" onSubmit={(e) => e.preventDefault()}>
        <Field id="retention-target" label="Cohort: users who did">
          <EventSelect id="retention-target" events={events} value={target} onChange={setTarget} />
        </Field>
        <Field id="retention-returning" label="Came back and did">
          <EventSelect id="retention-returning" events={events} value={returning} onChange={setReturning} any="the same event" />
        </Field>
        <Field id="retention-period" label="Period">
          <select id="retention-period" value={period} onChange={(e) => setPeriod(e.target.value)}>
            {['day', 'week', 'month'].map((p) => (
              <option key={p}>{p}</option>
            ))}
          </select>
        </Field>
        <Field id="retention-periods" label="Periods">
          <input id="retention-periods" type="number" min={1} max={52} value={periods} onChange={(e) => setPeriods(Math.min(52, Math.max(1, Number(e.target.value) || 1)))} />
        </Field>
      </form>
      <Result state={state}>
        {(data) =>
          data.result.length === 0 ? (
            <p className="muted">No cohorts in this range.</p>
          ) : (
            <div className="table-wrap">
              <table className="retention">
                <caption className="sr-only">Share of each cohort that came back, by {period}</caption>
                <thead>
                  <tr>
                    <th scope="col">Cohort</th>
                    <th scope="col" className="num">Users</th>
                    {data.result[0].rates.map((_, i) => (
                      <th scope="col" className="num" key={i}>
                        {period} {i}
                      </th>
                    ))}
                  </tr>
                </thead>
                <tbody>
                  {data.result.map((cohort) => (
                    <tr key={cohort.cohort}>
                      <th scope="row">{shortDate(cohort.cohort)}</th>
                      <td className="num">{cohort.size}</td>
                      {cohort.rates.map((rate, i) =>
                        // A period that has not begun yet is blank, not a 0% return.
                        Date.parse(cohort.cohort) + i * PERIOD_MS[period] > Date.now() ? (
                          <td key={i} className="num cell future">
                            <span className="sr-only">not yet</span>
                          </td>
                        ) : (
                          <td
                            key={i}
                            className="num cell"
                            title={`${cohort.values[i]} of ${cohort.size} users`}
                            // Shade by the share retained; dark cells get light text for contrast.
                            style={{ background: `rgba(47, 111, 176, ${0.08 + rate * 0.85})`, color: rate > 0.5 ? '#fff' : undefined }}
                          >
                            {percent(rate)}
                          </td>
                        ),
                      )}
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )
        }
      </Result>
    </section>
  );
}

// --- active users ------------------------------------------------------------------------------

function ActiveUsers({ events, from }: { events: string[]; from: string }) {
  const [event, setEvent] = useState('');
  const body = { event: event || undefined, windows: ['dau', 'wau', 'mau'], date_from: from };
  const state = useQuery<ActiveUsersData>(JSON.stringify(body), (signal) => analytics<ActiveUsersData>('active-users', body, signal));
  const option = useMemo<EChartsCoreOption | null>(() => {
    const data = state.data;
    if (!data) return null;
    const names = { dau: 'Daily active', wau: 'Weekly active', mau: 'Monthly active' } as const;
    return {
      grid: { left: 8, right: 16, top: 16, bottom: 48, containLabel: true },
      tooltip: { trigger: 'axis', confine: true },
      legend: { bottom: 0 },
      xAxis: { type: 'category', data: data.labels.map(shortDate) },
      yAxis: { type: 'value', minInterval: 1 },
      series: (['dau', 'wau', 'mau'] as const).map((w) => ({ name: names[w], type: 'line', data: data[w] ?? [], showSymbol: data.labels.length < 40 })),
    };
  }, [state.data]);
  return (
    <section className="card" aria-labelledby="active-title">
      <h2 id="active-title">Active users</h2>
      <form className="query-form" onSubmit={(e) => e.preventDefault()}>
        <Field id="active-event" label="Counting">
          <EventSelect id="active-event" events={events} value={event} onChange={setEvent} any="any event" />
        </Field>
      </form>
      <Result state={state}>
        {(data) => {
          const last = data.labels.length - 1;
          return (
            <>
              <dl className="kpis" role="status">
                {(['dau', 'wau', 'mau'] as const).map((w) => (
                  <div key={w}>
                    <dt>{w.toUpperCase()}</dt>
                    <dd>{data[w]?.[last] ?? 0}</dd>
                  </div>
                ))}
              </dl>
              {option && <Chart option={option} height={280} summary={`Active users per day; today DAU ${data.dau?.[last] ?? 0}, WAU ${data.wau?.[last] ?? 0}, MAU ${data.mau?.[last] ?? 0}`} />}
            </>
          );
        }}
      </Result>
    </section>
  );
}
