// The login page: an API token in, a session cookie out (the token stays on the server).
import { useState } from 'react';
import { login, type SessionInfo } from '../api';
import { ErrorMessage } from '../components/common';

export function Login({ onLogin }: { onLogin: (session: SessionInfo) => void }) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  return (
    <section className="card login" aria-labelledby="login-title">
      <h1 id="login-title">Log in</h1>
      <p className="muted">This signalroom asks for an API token (<code>signalroom token new</code> makes one).</p>
      <form
        onSubmit={async (event) => {
          event.preventDefault();
          setBusy(true);
          setError(null);
          try {
            onLogin(await login(token));
          } catch (e) {
            setError(e);
          } finally {
            setBusy(false);
          }
        }}
      >
        <label htmlFor="login-token">API token</label>
        <input id="login-token" type="password" autoComplete="current-password" value={token} onChange={(e) => setToken(e.target.value)} required autoFocus />
        <ErrorMessage error={error} />
        <div className="form-row">
          <button type="submit" className="primary" disabled={busy || !token.trim()}>
            Log in
          </button>
        </div>
      </form>
    </section>
  );
}
