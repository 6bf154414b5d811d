import { Dialog } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { stateLabel } from './format';
import { cannotStart } from './running';
import { IServer } from './types';

/** The value of the choice that creates a new server instead. */
export const NEW_SERVER = 'new';

/** A server as the picker offers it. */
export interface IServerChoice {
  server: IServer;
  /** What the option says, e.g. "gpu-box (off: starts first)". */
  label: string;
  /** Why it cannot be chosen, or null. */
  disabled: string | null;
}

/**
 * The servers to offer, running ones first, then those that can be started (they start
 * first), then the others, disabled with the reason.
 */
export function serverChoices(
  servers: ReadonlyArray<IServer>
): IServerChoice[] {
  const rank = (s: IServer) =>
    s.state === 'running' ? 0 : cannotStart(s) === null ? 1 : 2;
  return [...servers]
    .sort((a, b) => rank(a) - rank(b) || a.id - b.id)
    .map(server => {
      const refused = cannotStart(server);
      let label = server.name;
      if (server.state === 'starting') {
        label += ' (starting)';
      } else if (server.state !== 'running') {
        label += refused
          ? ` (${stateLabel(server.state).toLowerCase()})`
          : ` (${server.state}: starts first)`;
      }
      return { server, label, disabled: refused };
    });
}

/** The picker's body: a select of the servers, and what choosing one will do. */
export class PickServerBody extends ReactWidget {
  constructor(
    private readonly _servers: ReadonlyArray<IServer>,
    private readonly _purpose: string
  ) {
    super();
    this.addClass('jp-ComputeServers-pickBody');
    const choices = serverChoices(_servers);
    const first = choices.find(c => !c.disabled);
    this.value = first ? String(first.server.id) : NEW_SERVER;
  }

  /** The chosen server's id as text, or `NEW_SERVER`. */
  value: string;

  getValue(): number | typeof NEW_SERVER {
    return this.value === NEW_SERVER ? NEW_SERVER : Number(this.value);
  }

  protected render(): JSX.Element {
    const choices = serverChoices(this._servers);
    const chosen = choices.find(c => String(c.server.id) === this.value);
    let hint: string;
    if (!chosen) {
      hint = `Create a compute server; it starts, then ${this._purpose} opens on it.`;
    } else if (chosen.server.state === 'running') {
      hint = `${chosen.server.name} is running.`;
    } else {
      hint = `${chosen.server.name} starts first; ${this._purpose} opens when it runs.`;
    }
    return (
      <div className="jp-ComputeServers-pickServer">
        {choices.length === 0 && (
          <p className="jp-ComputeServers-pickEmpty">
            There is no compute server yet.
          </p>
        )}
        <label className="jp-ComputeServers-field">
          <span className="jp-ComputeServers-fieldLabel">Compute server</span>
          <select
            className="jp-mod-styled"
            name="server"
            value={this.value}
            onChange={event => {
              this.value = event.target.value;
              this.update();
            }}
          >
            {choices.map(c => (
              <option
                key={c.server.id}
                value={String(c.server.id)}
                disabled={c.disabled !== null}
                title={c.disabled ?? undefined}
              >
                {c.label}
              </option>
            ))}
            <option value={NEW_SERVER}>New compute server…</option>
          </select>
        </label>
        <p className="jp-ComputeServers-pickHint">{hint}</p>
      </div>
    );
  }
}

/**
 * Ask which compute server to use for something (a terminal, SSH access).
 *
 * @returns the chosen server's id, `NEW_SERVER` to create one, or null when cancelled
 */
export async function pickServer(
  servers: ReadonlyArray<IServer>,
  options: { title: string; purpose: string; accept: string }
): Promise<number | typeof NEW_SERVER | null> {
  const body = new PickServerBody(servers, options.purpose);
  const result = await new Dialog({
    title: options.title,
    body,
    buttons: [
      Dialog.cancelButton(),
      Dialog.okButton({
        label: options.accept,
        className: 'jp-ComputeServers-pickAccept'
      })
    ],
    focusNodeSelector: 'select[name="server"]'
  }).launch();
  return result.button.accept ? result.value : null;
}
