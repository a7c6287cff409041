// Who is logged in: the principal behind the session cookie (or Authorization header).
import { createContext, useContext } from 'react';
import type { SessionInfo } from './api';

export const SessionContext = createContext<SessionInfo | null>(null);

export function useSession(): SessionInfo | null {
  return useContext(SessionContext);
}

/** Whether the caller may change things (save dashboards, create or expire silences). */
export function useCanWrite(): boolean {
  const session = useSession();
  return !session || session.scopes.includes('write') || session.scopes.includes('admin');
}
