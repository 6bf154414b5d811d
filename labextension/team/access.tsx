import { Dialog, showDialog } from '@jupyterlab/apputils';
import * as React from 'react';

import { IRevocation, IRevocationDone } from './types';

/** What revoking `user` does, as the confirmation says it. */
export function revokeWarning(user: string): string {
  return (
    `${user} gets no new SSH certificate, database login or cloud credential from the ` +
    "team's control plane, and their open database sessions, OpenStack tokens and " +
    'Kubernetes bindings end now; hosts refuse the certificates they hold once they fetch ' +
    'the revoked keys. Their compute servers keep running: stop them from the list if they ' +
    'should not. Restore lets them get new credentials again.'
  );
}

/** Ask before revoking `user`'s access; true when the admin confirmed. */
export async function confirmRevoke(user: string): Promise<boolean> {
  const result = await showDialog({
    title: `Revoke ${user}'s access?`,
    body: revokeWarning(user),
    buttons: [
      Dialog.cancelButton(),
      Dialog.warnButton({
        label: 'Revoke',
        className: 'jp-ComputeServers-confirm'
      })
    ],
    defaultButton: 0
  });
  return result.button.accept;
}

/** "bob's access is revoked: 1 database session ended. Their servers keep running." */
export function revokedNotice(done: IRevocationDone): string {
  const sessions = done.database_sessions_ended;
  const tokens = done.openstack_tokens_revoked;
  const ended = [
    `${sessions} database session${sessions === 1 ? '' : 's'} ended`,
    ...(tokens
      ? [`${tokens} OpenStack token${tokens === 1 ? '' : 's'} revoked`]
      : [])
  ].join(', ');
  return `${done.user}'s access is revoked: ${ended}. Their servers keep running.`;
}

/** "revoked by root, 06/12/2026, 09:30:00": who revoked a user's access and when. */
export function revokedBy(revocation: IRevocation): string {
  const when = new Date(revocation.revoked_at * 1000).toLocaleString();
  return `revoked by ${revocation.revoked_by}, ${when}`;
}

export interface IAccessViewProps {
  /** The revoked users; null when they could not be read (`error` says why). */
  revocations: ReadonlyArray<IRevocation> | null;
  error: string | null;
  /** The admin looking (who may not revoke themselves). */
  self: string;
  /** Whether a revoke or restore is under way (the buttons wait). */
  busy: boolean;
  /** Revoke a user's access (after a confirmation). */
  onRevoke: (user: string) => void;
  onRestore: (user: string) => void;
}

/**
 * The admin view's Access part: the users whose access is revoked (who revoked them, when)
 * with Restore, and a revoke by name for a user who has no server in the list above.
 */
export function AccessView(props: IAccessViewProps): JSX.Element {
  const [name, setName] = React.useState('');
  const user = name.trim();
  return (
    <div className="jp-ComputeServers-access">
      <h4>Access</h4>
      {props.revocations === null ? (
        <p className="jp-ComputeServers-error" role="alert">
          Could not read whose access is revoked: {props.error}
        </p>
      ) : (
        <>
          {props.revocations.length === 0 ? (
            <p className="jp-ComputeServers-team-empty">
              No user's access is revoked.
            </p>
          ) : (
            <ul className="jp-ComputeServers-revocations">
              {props.revocations.map(revocation => (
                <li key={revocation.user} data-user={revocation.user}>
                  <strong>{revocation.user}</strong>:{' '}
                  <span className="jp-ComputeServers-revoked-by">
                    {revokedBy(revocation)}
                  </span>{' '}
                  <button
                    type="button"
                    className="jp-mod-styled jp-ComputeServers-restore"
                    disabled={props.busy}
                    onClick={() => props.onRestore(revocation.user)}
                  >
                    Restore
                  </button>
                </li>
              ))}
            </ul>
          )}
          <form
            className="jp-ComputeServers-revoke-form"
            onSubmit={event => {
              event.preventDefault();
              if (user && user !== props.self) {
                props.onRevoke(user);
                setName('');
              }
            }}
          >
            <input
              className="jp-mod-styled"
              name="user"
              aria-label="Hub user to revoke"
              placeholder="Hub user name"
              value={name}
              onChange={event => setName(event.target.value)}
            />{' '}
            <button
              type="submit"
              className="jp-mod-styled jp-mod-warn jp-ComputeServers-revoke"
              disabled={props.busy || !user || user === props.self}
            >
              Revoke
            </button>
          </form>
        </>
      )}
    </div>
  );
}
