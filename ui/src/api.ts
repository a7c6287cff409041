// Same-origin calls to signalroom's APIs (Prometheus, Alertmanager v2, Loki, Jaeger, /api/sr).

export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

type Params = Record<string, string | number | undefined | string[]>;

export function withParams(path: string, params: Params = {}): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(key, v));
    else search.append(key, String(value));
  }
  const text = search.toString();
  return text ? `${path}?${text}` : path;
}

function errorMessage(body: unknown, status: number): string {
  if (typeof body === 'string' && body) return body;
  if (body && typeof body === 'object') {
    const record = body as Record<string, unknown>;
    if (typeof record.error === 'string') return record.error;
    if (Array.isArray(record.errors) && record.errors.length) {
      const first = record.errors[0] as { msg?: string };
      if (first?.msg) return first.msg;
    }
    if (typeof record.message === 'string') return record.message;
  }
  return `request failed with HTTP ${status}`;
}

export async function request<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const init: RequestInit = { method, signal, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { ...init.headers, 'Content-Type': 'application/json' };
  }
  const response = await fetch(path, init);
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    // not JSON: keep the text for the error message
  }
  if (!response.ok) {
    // Any 401 means the session is gone or was never there: the app shows the login page.
    if (response.status === 401 && !path.startsWith('/api/sr/session')) window.dispatchEvent(new Event('sr:unauthorized'));
    throw new ApiError(errorMessage(parsed, response.status), response.status);
  }
  return parsed as T;
}

export const get = <T>(path: string, params?: Params, signal?: AbortSignal) =>
  request<T>('GET', withParams(path, params), undefined, signal);

// --- Prometheus API ---------------------------------------------------------------------------

export type Labels = Record<string, string>;
export interface InstantSample {
  metric: Labels;
  value: [number, string];
}
export interface RangeSeries {
  metric: Labels;
  values: [number, string][];
}
export type QueryData =
  | { resultType: 'vector'; result: InstantSample[] }
  | { resultType: 'matrix'; result: RangeSeries[] }
  | { resultType: 'scalar' | 'string'; result: [number, string] };

interface PromEnvelope<T> {
  status: 'success' | 'error';
  data: T;
  warnings?: string[];
}

export async function promQuery(query: string, time: number, signal?: AbortSignal): Promise<QueryData> {
  return (await get<PromEnvelope<QueryData>>('/api/v1/query', { query, time }, signal)).data;
}

export async function promRange(
  query: string,
  start: number,
  end: number,
  step: number,
  signal?: AbortSignal,
): Promise<RangeSeries[]> {
  const data = (await get<PromEnvelope<QueryData>>('/api/v1/query_range', { query, start, end, step }, signal)).data;
  return data.resultType === 'matrix' ? data.result : [];
}

export async function labelValues(label: string, match?: string[], start?: number, end?: number): Promise<string[]> {
  return (
    await get<PromEnvelope<string[]>>(`/api/v1/label/${encodeURIComponent(label)}/values`, {
      'match[]': match,
      start,
      end,
    })
  ).data;
}

export async function labelNames(match?: string[]): Promise<string[]> {
  return (await get<PromEnvelope<string[]>>('/api/v1/labels', { 'match[]': match })).data;
}

export interface MetricMetadata {
  type: string;
  help: string;
  unit: string;
}
export async function metadata(): Promise<Record<string, MetricMetadata[]>> {
  return (await get<PromEnvelope<Record<string, MetricMetadata[]>>>('/api/v1/metadata')).data;
}

export interface Rule {
  name: string;
  query: string;
  type: 'alerting' | 'recording';
  health: string;
  state?: string;
  lastError?: string;
  duration?: number;
  labels?: Labels;
  annotations?: Labels;
  alerts?: { labels: Labels; annotations: Labels; state: string; activeAt?: string; value: string }[];
  lastEvaluation?: string;
  evaluationTime?: number;
}
export interface RuleGroup {
  name: string;
  file: string;
  interval: number;
  rules: Rule[];
}
export async function rules(): Promise<RuleGroup[]> {
  return (await get<PromEnvelope<{ groups: RuleGroup[] }>>('/api/v1/rules')).data.groups;
}

// --- Alertmanager API v2 ----------------------------------------------------------------------

export interface AmAlert {
  labels: Labels;
  annotations: Labels;
  startsAt: string;
  endsAt: string;
  fingerprint: string;
  generatorURL?: string;
  status: { state: string; silencedBy: string[]; inhibitedBy: string[] };
  receivers: { name: string }[];
}
export interface AlertGroup {
  labels: Labels;
  receiver: { name: string };
  alerts: AmAlert[];
}
export interface Matcher {
  name: string;
  value: string;
  isRegex: boolean;
  isEqual?: boolean;
}
export interface Silence {
  id: string;
  matchers: Matcher[];
  startsAt: string;
  endsAt: string;
  createdBy: string;
  comment: string;
  status: { state: 'active' | 'pending' | 'expired' };
  updatedAt?: string;
}
export const alertGroups = () => get<AlertGroup[]>('/api/v2/alerts/groups');
export const silences = () => get<Silence[]>('/api/v2/silences');
export const createSilence = (silence: Omit<Silence, 'id' | 'status'>) =>
  request<{ silenceID: string }>('POST', '/api/v2/silences', silence);
export const expireSilence = (id: string) => request<void>('DELETE', `/api/v2/silence/${encodeURIComponent(id)}`);

// --- Loki -------------------------------------------------------------------------------------

export interface LogStream {
  stream: Labels;
  values: [string, string][];
}
export async function logQuery(
  query: string,
  startNs: string,
  endNs: string,
  limit: number,
  signal?: AbortSignal,
): Promise<{ resultType: string; result: LogStream[] | RangeSeries[] }> {
  const body = await get<PromEnvelope<{ resultType: string; result: LogStream[] | RangeSeries[] }>>(
    '/loki/api/v1/query_range',
    { query, start: startNs, end: endNs, limit, direction: 'backward' },
    signal,
  );
  return body.data;
}
/** A metric LogQL query over a range: a matrix, like PromQL's query_range. */
export async function logMetricRange(query: string, start: number, end: number, step: number, signal?: AbortSignal): Promise<RangeSeries[]> {
  const body = await get<PromEnvelope<{ resultType: string; result: RangeSeries[] }>>(
    '/loki/api/v1/query_range',
    { query, start: `${Math.floor(start)}000000000`, end: `${Math.ceil(end)}000000000`, step },
    signal,
  );
  return body.data.resultType === 'matrix' ? body.data.result : [];
}
export async function logLabels(): Promise<string[]> {
  return (await get<PromEnvelope<string[]>>('/loki/api/v1/labels')).data ?? [];
}
export async function logLabelValues(name: string): Promise<string[]> {
  return (await get<PromEnvelope<string[]>>(`/loki/api/v1/label/${encodeURIComponent(name)}/values`)).data ?? [];
}

// --- Jaeger -----------------------------------------------------------------------------------

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  startTime: number; // microseconds
  duration: number; // microseconds
  tags: { key: string; type: string; value: unknown }[];
  logs: { timestamp: number; fields: { key: string; value: unknown }[] }[];
  processID: string;
  warnings?: string[] | null;
}
export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: { key: string; value: unknown }[] }>;
}
interface JaegerEnvelope<T> {
  data: T;
  errors: { code: number; msg: string }[] | null;
}
export async function services(): Promise<string[]> {
  return (await get<JaegerEnvelope<string[] | null>>('/api/services')).data ?? [];
}
export async function operations(service: string): Promise<string[]> {
  return (await get<JaegerEnvelope<string[] | null>>(`/api/services/${encodeURIComponent(service)}/operations`)).data ?? [];
}
export async function findTraces(params: Params): Promise<JaegerTrace[]> {
  return (await get<JaegerEnvelope<JaegerTrace[] | null>>('/api/traces', params)).data ?? [];
}
export async function getTrace(id: string): Promise<JaegerTrace | undefined> {
  return (await get<JaegerEnvelope<JaegerTrace[]>>(`/api/traces/${encodeURIComponent(id)}`)).data[0];
}

// --- signalroom's dashboards API ---------------------------------------------------------------

export interface DashboardSummary {
  uid: string;
  title: string;
  tags: string[];
  version: number;
  updatedAt: string;
  provisioned?: boolean;
  pack?: string;
}
export interface DashboardMeta {
  version: number;
  provisioned?: boolean;
  pack?: string;
}
export const listDashboards = async () =>
  (await get<PromEnvelope<DashboardSummary[]>>('/api/sr/dashboards')).data;
export const loadDashboard = async (uid: string) =>
  (await get<PromEnvelope<{ dashboard: unknown; meta: DashboardMeta }>>(`/api/sr/dashboards/${encodeURIComponent(uid)}`))
    .data;
export const saveDashboard = async (uid: string, dashboard: unknown) =>
  (await request<PromEnvelope<DashboardSummary>>('PUT', `/api/sr/dashboards/${encodeURIComponent(uid)}`, dashboard)).data;
export const importDashboard = async (dashboard: unknown, overwrite: boolean) =>
  (await request<PromEnvelope<DashboardSummary>>('POST', '/api/sr/dashboards', { dashboard, overwrite })).data;
export const deleteDashboard = (uid: string) =>
  request<void>('DELETE', `/api/sr/dashboards/${encodeURIComponent(uid)}`);

export interface TraceLogLine {
  timestamp: string;
  stream: string;
  line: string;
  spanID: string | null;
}
export async function traceLogs(traceId: string): Promise<TraceLogLine[]> {
  return (await get<PromEnvelope<TraceLogLine[]>>(`/api/sr/traces/${encodeURIComponent(traceId)}/logs`, { limit: 200 })).data;
}

// --- sessions ---------------------------------------------------------------------------------

export interface SessionInfo {
  name: string;
  scopes: string[];
  tenants: string[] | null;
  authEnabled: boolean;
}
export const currentSession = async () => (await get<PromEnvelope<SessionInfo>>('/api/sr/session')).data;
export const login = async (token: string) =>
  (await request<PromEnvelope<SessionInfo>>('POST', '/api/sr/session', { token })).data;
export const logout = () => request<void>('DELETE', '/api/sr/session');

// --- event analytics --------------------------------------------------------------------------

export interface TrendResult {
  event: string;
  math: string;
  property: string | null;
  breakdown_value: string | null;
  labels: string[];
  data: number[];
  count: number;
}
export interface TrendsData {
  interval: string;
  result: TrendResult[];
}
export interface FunnelStepResult {
  index: number;
  event: string;
  count: number;
  conversion_from_first: number;
  conversion_from_previous: number;
  dropped_off: number;
  average_time_to_convert_s: number | null;
  median_time_to_convert_s: number | null;
}
export interface FunnelData {
  steps: FunnelStepResult[];
  conversion_rate: number;
}
export interface RetentionCohort {
  cohort: string;
  size: number;
  values: number[];
  rates: number[];
}
export interface RetentionData {
  period: string;
  result: RetentionCohort[];
}
export interface ActiveUsersData {
  labels: string[];
  dau?: number[];
  wau?: number[];
  mau?: number[];
}
export interface SqlData {
  columns: string[];
  rows: unknown[][];
  truncated: boolean;
}
export type AnalyticsKind = 'trends' | 'funnels' | 'retention' | 'active-users' | 'stickiness' | 'revenue' | 'top-products' | 'sql';

export async function analytics<T>(kind: AnalyticsKind, body: Record<string, unknown>, signal?: AbortSignal): Promise<T> {
  return (await request<PromEnvelope<T>>('POST', `/api/sr/analytics/${kind}`, body, signal)).data;
}
export async function eventNames(): Promise<string[]> {
  const data = await analytics<SqlData>('sql', {
    query: 'SELECT event, count(*) AS n FROM events GROUP BY event ORDER BY n DESC LIMIT 200',
    date_from: '-90d',
  });
  return data.rows.map((row) => String(row[0]));
}

// --- the notification inbox (a webhook receiver inside signalroom) ---------------------------

export interface WebhookAlert {
  status?: string;
  labels?: Labels;
  annotations?: Labels;
  startsAt?: string;
  endsAt?: string;
  generatorURL?: string;
  fingerprint?: string;
}
/** Alertmanager's webhook payload (version 4); the inbox keeps any JSON object, so every field
 * may be missing. */
export interface WebhookPayload {
  version?: string;
  groupKey?: string;
  status?: string;
  receiver?: string;
  groupLabels?: Labels;
  commonLabels?: Labels;
  commonAnnotations?: Labels;
  externalURL?: string;
  alerts?: WebhookAlert[];
  truncatedAlerts?: number;
}
export interface InboxNotification {
  id: string;
  receivedAt: number; // epoch seconds
  payload: WebhookPayload;
}
export const inbox = async (limit = 100) => (await get<PromEnvelope<InboxNotification[]>>('/api/sr/inbox', { limit })).data;
