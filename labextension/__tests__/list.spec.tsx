/** The server list in the sidebar: rows, badges, and one button per allowed action. */
import * as React from 'react';
import { act } from 'react';

import { ServerList } from '../servers/list';
import { AllowedAction, IServer } from '../servers/types';
import { makeServer, mountReactPerTest } from './testing';

/**
 * What the real server answers for a server (model.spec.ts checks it against one): the list
 * only renders what it is given, so rows are built here, including states this machine's
 * local cloud cannot reach. `allowed_actions` is given for the state whenever it matters.
 */

const RUNNING: Partial<IServer> = {
  state: 'running',
  allowed_actions: ['stop', 'reboot', 'deprovision']
};

describe('ServerList', () => {
  const mount = mountReactPerTest();
  let clicked: [string, AllowedAction][];

  beforeEach(() => {
    clicked = [];
  });

  function render(
    servers: IServer[],
    extra: { loaded?: boolean; error?: string; pending?: Set<number> } = {}
  ): void {
    mount.render(
      <ServerList
        servers={servers}
        loaded={extra.loaded ?? true}
        error={extra.error}
        pending={extra.pending}
        cloudLabels={{ local: 'This machine' }}
        onAction={(server, action) => clicked.push([server.name, action])}
      />
    );
  }

  function row(name: string): HTMLElement {
    const element = mount.container.querySelector<HTMLElement>(
      `.jp-ComputeServers-server[data-server-name="${name}"]`
    );
    expect(element).not.toBeNull();
    return element!;
  }

  function buttons(name: string): string[] {
    return Array.from(
      row(name).querySelectorAll<HTMLButtonElement>('button[data-action]')
    ).map(b => b.dataset.action!);
  }

  it("shows a running server's warm kernels and their memory", () => {
    render([
      makeServer({
        id: 1,
        name: 'gpu-box',
        ...RUNNING,
        warm_kernels: { count: 1, memory_bytes: 85 * 2 ** 20 }
      }),
      makeServer({
        id: 2,
        name: 'two',
        ...RUNNING,
        warm_kernels: { count: 2, memory_bytes: null }
      }),
      makeServer({ id: 3, name: 'none', ...RUNNING })
    ]);
    const line = (name: string) =>
      row(name).querySelector('.jp-ComputeServers-warmKernels')?.textContent;
    expect(line('gpu-box')).toBe('1 warm kernel · 85 MB');
    expect(line('two')).toBe('2 warm kernels'); // memory not known yet
    expect(line('none')).toBeUndefined();
  });

  it('shows one row per server with swatch, name, badge, cloud and hardware', () => {
    render([
      makeServer({ id: 1, name: 'cpu-box', color: '#ff7f0e' }),
      makeServer({
        id: 2,
        name: 'gpu-box',
        ...RUNNING,
        config: {
          ...makeServer().config,
          cpu: 4,
          memory_gb: 16,
          disk_gb: 50,
          gpu: { type: 'T4', count: 1 }
        }
      })
    ]);

    const rows = mount.container.querySelectorAll('.jp-ComputeServers-server');
    expect(rows).toHaveLength(2);
    const first = row('cpu-box');
    expect(first.dataset.serverId).toBe('1');
    expect(
      first.querySelector<HTMLElement>('.jp-ComputeServers-swatch')!.style
        .backgroundColor
    ).toBe('rgb(255, 127, 14)');
    expect(first.querySelector('.jp-ComputeServers-name')!.textContent).toBe(
      'cpu-box'
    );
    expect(first.querySelector('.jp-ComputeServers-cloud')!.textContent).toBe(
      'local'
    );
    expect(
      first.querySelector('.jp-ComputeServers-cloud')!.getAttribute('title')
    ).toBe('This machine');
    expect(
      first.querySelector('.jp-ComputeServers-hardware')!.textContent
    ).toBe('2 CPU · 4 GB · 10 GB disk');
    expect(
      row('gpu-box').querySelector('.jp-ComputeServers-hardware')!.textContent
    ).toBe('4 CPU · 16 GB · 50 GB disk · 1× T4');
  });

  it('shows the state in a badge with data-state', () => {
    render([
      makeServer({ id: 1, name: 'a', ...RUNNING }),
      makeServer({
        id: 2,
        name: 'b',
        state: 'off',
        allowed_actions: ['start', 'deprovision']
      })
    ]);

    const badge = row('a').querySelector<HTMLElement>(
      '.jp-ComputeServers-badge'
    )!;
    expect(badge.dataset.state).toBe('running');
    expect(badge.textContent).toBe('Running');
    expect(badge.classList).not.toContain('jp-mod-transitional');
    expect(badge.querySelector('.jp-ComputeServers-spinner')).toBeNull();
    expect(
      row('b').querySelector<HTMLElement>('.jp-ComputeServers-badge')!.dataset
        .state
    ).toBe('off');
  });

  it('spins the badge and shows the progress while an operation runs', () => {
    render([
      makeServer({
        name: 'busy',
        state: 'starting',
        operation: 'start',
        progress: { message: 'Booting the VM', fraction: 0.5, at: 1 },
        allowed_actions: []
      })
    ]);

    const badge = row('busy').querySelector<HTMLElement>(
      '.jp-ComputeServers-badge'
    )!;
    expect(badge.dataset.state).toBe('starting');
    expect(badge.classList).toContain('jp-mod-transitional');
    expect(badge.querySelector('.jp-ComputeServers-spinner')).not.toBeNull();
    expect(
      row('busy').querySelector('.jp-ComputeServers-progressMessage')!
        .textContent
    ).toBe('Booting the VM');
    expect(
      row('busy').querySelector<HTMLProgressElement>('progress')!.value
    ).toBe(0.5);
    expect(buttons('busy')).toEqual([]);
  });

  it("says plainly that a server waits in a host's GPU queue", () => {
    const message =
      'Waiting on lab: 2nd in line (1 free NVIDIA A100 needed, 0 free)';
    render([
      makeServer({
        name: 'queued',
        cloud: 'ssh',
        state: 'starting',
        operation: 'start',
        progress: { message, fraction: null, at: 1 },
        allowed_actions: []
      })
    ]);
    const progress = row('queued').querySelector<HTMLElement>(
      '.jp-ComputeServers-progress'
    )!;
    expect(progress.classList).toContain('jp-mod-waiting');
    expect(progress.getAttribute('role')).toBe('status');
    expect(
      progress.querySelector<HTMLElement>('.jp-ComputeServers-progressMessage')!
        .title
    ).toBe(message);
    expect(progress.textContent).toBe(message);
    expect(progress.querySelector('progress')).toBeNull();
  });

  it('adds the buttons given for a server after its actions', () => {
    mount.render(
      <ServerList
        servers={[makeServer({ name: 'up', ...RUNNING })]}
        loaded={true}
        onAction={() => undefined}
        renderActions={server => (
          <button data-tool="terminal">Terminal on {server.name}</button>
        )}
      />
    );
    const buttons = Array.from(
      row('up').querySelectorAll('.jp-ComputeServers-actions button')
    ).map(b => b.textContent);
    expect(buttons).toEqual([
      'Stop',
      'Reboot',
      'Deprovision',
      'Terminal on up'
    ]);
  });

  it('names the operation when it has no progress message yet', () => {
    render([
      makeServer({
        name: 'busy',
        state: 'stopping',
        operation: 'stop',
        allowed_actions: []
      })
    ]);
    expect(
      row('busy').querySelector('.jp-ComputeServers-progress')!.textContent
    ).toBe('Stop…');
    expect(row('busy').querySelector('progress')).toBeNull();
  });

  it('shows the reason of an error, and no progress when idle', () => {
    render([
      makeServer({
        name: 'broken',
        state: 'error',
        allowed_actions: ['deprovision'],
        state_reason: 'start failed: sshd did not come up; see the log'
      }),
      makeServer({ id: 2, name: 'fine', state_reason: 'created' })
    ]);

    expect(
      row('broken').querySelector('.jp-ComputeServers-reason')!.textContent
    ).toBe('start failed: sshd did not come up; see the log');
    expect(row('fine').querySelector('.jp-ComputeServers-reason')).toBeNull();
    expect(row('fine').querySelector('.jp-ComputeServers-progress')).toBeNull();
  });

  it('has buttons for exactly the allowed actions', () => {
    render([
      makeServer({ id: 1, name: 'new' }),
      makeServer({ id: 2, name: 'up', ...RUNNING }),
      makeServer({
        id: 3,
        name: 'down',
        state: 'off',
        allowed_actions: ['start', 'deprovision']
      }),
      makeServer({
        id: 4,
        name: 'asleep',
        state: 'suspended',
        allowed_actions: ['stop', 'resume', 'deprovision']
      }),
      makeServer({
        id: 5,
        name: 'awake',
        state: 'running',
        allowed_actions: ['stop', 'suspend', 'reboot', 'deprovision']
      })
    ]);

    expect(buttons('new')).toEqual(['start', 'delete']);
    expect(buttons('up')).toEqual(['stop', 'reboot', 'deprovision']);
    expect(buttons('down')).toEqual(['start', 'deprovision']);
    expect(buttons('asleep')).toEqual(['resume', 'stop', 'deprovision']);
    expect(buttons('awake')).toEqual([
      'stop',
      'suspend',
      'reboot',
      'deprovision'
    ]);
    const labels = Array.from(
      row('awake').querySelectorAll('button[data-action]')
    ).map(b => b.textContent);
    expect(labels).toEqual(['Stop', 'Suspend', 'Reboot', 'Deprovision']);
    expect(
      row('new').querySelector('button[data-action="delete"]')!.textContent
    ).toBe('Delete');
  });

  it('calls back with the server and the action of a button', () => {
    render([makeServer({ name: 'box', ...RUNNING })]);

    act(() =>
      row('box')
        .querySelector<HTMLButtonElement>('button[data-action="stop"]')!
        .click()
    );

    expect(clicked).toEqual([['box', 'stop']]);
  });

  it('disables the buttons of a server with a request in flight', () => {
    render(
      [
        makeServer({ id: 1, name: 'waiting', ...RUNNING }),
        makeServer({ id: 2, name: 'free', ...RUNNING })
      ],
      { pending: new Set([1]) }
    );

    const disabled = (name: string) =>
      Array.from(
        row(name).querySelectorAll<HTMLButtonElement>('button[data-action]')
      ).map(b => b.disabled);
    expect(disabled('waiting')).toEqual([true, true, true]);
    expect(disabled('free')).toEqual([false, false, false]);
  });

  it('says when there is no server yet, and while loading', () => {
    render([]);
    expect(
      mount.container.querySelector('.jp-ComputeServers-empty')!.textContent
    ).toContain('No compute servers yet');

    render([], { loaded: false });
    expect(
      mount.container.querySelector('.jp-ComputeServers-empty')!.textContent
    ).toContain('Loading');
  });

  it('shows a failed refresh', () => {
    render([], { loaded: false, error: 'fetch failed' });
    const alert = mount.container.querySelector(
      '.jp-ComputeServers-listError'
    )!;
    expect(alert.getAttribute('role')).toBe('alert');
    expect(alert.textContent).toContain('fetch failed');
  });
});
