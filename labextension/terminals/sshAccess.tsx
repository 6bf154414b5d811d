import { Clipboard, Dialog, showErrorMessage } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { ApiError, requestAPI } from '../request';
import { describeError } from '../servers/actions';
import { IServer } from '../servers/types';
import { ISSHAccess } from './types';

/** Read a running server's SSH access snippet. */
export function fetchSSHAccess(
  serverId: number,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<ISSHAccess> {
  return requestAPI<ISSHAccess>(`servers/${serverId}/ssh-access`, {}, settings);
}

/** A button that copies `text` to the clipboard, and says so for a moment. */
export function CopyButton(props: {
  text: string;
  label: string;
}): JSX.Element {
  const [state, setState] = React.useState<'idle' | 'copied' | 'failed'>(
    'idle'
  );
  React.useEffect(() => {
    if (state === 'idle') {
      return;
    }
    const timer = setTimeout(() => setState('idle'), 2000);
    return () => clearTimeout(timer);
  }, [state]);
  return (
    <button
      type="button"
      className="jp-ComputeServers-copy jp-mod-styled"
      title={
        state === 'failed'
          ? 'This page may not copy: select the text and copy it'
          : `Copy ${props.label}`
      }
      aria-label={`Copy ${props.label}`}
      onClick={() => {
        try {
          Clipboard.copyToSystem(props.text);
          setState('copied');
        } catch {
          setState('failed');
        }
      }}
    >
      {state === 'copied'
        ? 'Copied'
        : state === 'failed'
          ? 'Select and copy'
          : 'Copy'}
    </button>
  );
}

/** A block of text to copy, with its heading. */
function Snippet(props: {
  name: string;
  heading: string;
  text: string;
  children?: React.ReactNode;
}): JSX.Element {
  return (
    <section className="jp-ComputeServers-snippet" data-snippet={props.name}>
      <div className="jp-ComputeServers-snippetHeader">
        <span className="jp-ComputeServers-snippetHeading">
          {props.heading}
        </span>
        <CopyButton text={props.text} label={props.heading.toLowerCase()} />
      </div>
      {props.children}
      <pre className="jp-ComputeServers-snippetText">{props.text}</pre>
    </section>
  );
}

/** What the SSH access dialog shows: the ssh config lines, the key's files, and examples. */
export function SSHAccessView(props: {
  server: Pick<IServer, 'name'>;
  access: ISSHAccess;
}): JSX.Element {
  const { access, server } = props;
  return (
    <div className="jp-ComputeServers-sshAccess">
      <p>
        Reach {server.name} with your own tools (ssh, scp, rsync, an
        editor&apos;s remote-SSH mode) as <code>{access.host_alias}</code>. The
        private key and the known_hosts file below are on the machine running
        Jupyter: use these lines there, or copy both files to where you run ssh
        and change their paths. The host key is pinned, so ssh never asks to
        trust it.
      </p>
      <Snippet
        name="config"
        heading="Lines for ~/.ssh/config"
        text={access.config}
      />
      <Snippet
        name="known_hosts"
        heading="Host key (known_hosts line)"
        text={access.known_hosts}
      >
        <div className="jp-ComputeServers-snippetNote">
          Written to <code>{access.known_hosts_file}</code>
        </div>
      </Snippet>
      {access.identity_file && (
        <Snippet
          name="identity_file"
          heading="Private key file"
          text={access.identity_file}
        />
      )}
      {access.workspace && (
        <Snippet
          name="workspace"
          heading="Workspace on the server"
          text={access.workspace}
        />
      )}
      {access.examples && access.examples.length > 0 && (
        <section className="jp-ComputeServers-snippet" data-snippet="examples">
          <div className="jp-ComputeServers-snippetHeader">
            <span className="jp-ComputeServers-snippetHeading">Examples</span>
          </div>
          <ul className="jp-ComputeServers-examples">
            {access.examples.map(example => (
              <li key={example}>
                <code>{example}</code>
                <CopyButton text={example} label={example} />
              </li>
            ))}
          </ul>
        </section>
      )}
    </div>
  );
}

/** What to do when the snippet cannot be read. */
export function describeSSHAccessError(error: unknown, name: string): string {
  if (error instanceof ApiError && error.status === 409) {
    return `${error.message} Start ${name}, then ask again.`;
  }
  return describeError(error);
}

/** Show a running server's SSH access in a dialog with copy buttons. */
export async function showSSHAccess(
  server: IServer,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<void> {
  let access: ISSHAccess;
  try {
    access = await fetchSSHAccess(server.id, settings);
  } catch (error) {
    await showErrorMessage(
      `No SSH access to ${server.name}`,
      describeSSHAccessError(error, server.name)
    );
    return;
  }
  const body = ReactWidget.create(
    <SSHAccessView server={server} access={access} />
  );
  body.addClass('jp-ComputeServers-sshAccessBody');
  const dialog = new Dialog({
    title: `SSH access to ${server.name}`,
    body,
    buttons: [Dialog.okButton({ label: 'Close' })]
  });
  dialog.addClass('jp-ComputeServers-sshAccessDialog');
  await dialog.launch();
}
