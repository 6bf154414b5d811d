/** The live workspace's section: the Mount/Unmount button and the mount's state. */
import * as React from 'react';
import { act } from 'react';

import { parseServerEvent, SERVER_EVENT_SCHEMA } from '../events/service';
import { IMount, MountSection } from '../mount/section';
import { IServer } from '../servers/types';
import { mountReactPerTest } from './testing';

function makeServer(overrides: Partial<IServer> = {}): IServer {
  return {
    id: 1,
    name: 'box',
    owner: 'me',
    color: '#1f77b4',
    notes: '',
    cloud: 'local',
    state: 'deprovisioned',
    state_reason: '',
    config: {
      image: 'python',
      image_tag: 'system',
      machine_type: null,
      cpu: 2,
      memory_gb: 4,
      gpu: null,
      disk_gb: 10,
      disk_type: null,
      spot: null,
      region: null,
      zone: null,
      extra: {}
    },
    idle_timeout_minutes: null,
    spend_limit: null,
    created: 1700000000,
    updated: 1700000000,
    operation: null,
    progress: null,
    allowed_actions: ['start', 'delete'],
    daily_stop: null,
    cost: null,
    auto_stop: null,
    mount: null,
    sync: {
      excludes: [],
      server_only: [],
      max_file_size_mb: 1024,
      auto_sync_minutes: null,
      before_kernel: true
    },
    ...overrides
  };
}

const MOUNTED: IMount = {
  path: '',
  read_only: false,
  mount_point: 'jupyter',
  state: 'mounted',
  reason: '',
  remote_path: '/home/me/workspace/jupyter',
  since: 1700000000
};

describe('MountSection', () => {
  const mount = mountReactPerTest();
  let calls: string[];
  let busy: Set<number>;
  let section: MountSection;

  beforeEach(() => {
    calls = [];
    busy = new Set();
    section = new MountSection({
      onMount: server => calls.push(`mount ${server.name}`),
      onUnmount: server => calls.push(`unmount ${server.name}`),
      busy: id => busy.has(id)
    });
  });

  function render(server: IServer, pending = false): void {
    mount.render(
      <div>
        {section.renderActions(server, pending)}
        {section.renderDetails(server)}
      </div>
    );
  }

  function button(): HTMLButtonElement | null {
    return mount.container.querySelector('button[data-tool="mount"]');
  }

  it('offers Mount on a running server and calls it', () => {
    render(makeServer({ state: 'running' }));
    expect(button()!.textContent).toBe('Mount');
    act(() => button()!.click());
    expect(calls).toEqual(['mount box']);
    expect(
      mount.container.querySelector('.jp-ComputeServers-mount')
    ).toBeNull();
  });

  it('offers nothing on a server that is not running', () => {
    render(makeServer({ state: 'off' }));
    expect(button()).toBeNull();
  });

  it('shows where it is mounted and offers Unmount', () => {
    render(makeServer({ state: 'running', mount: MOUNTED }));
    expect(button()!.textContent).toBe('Unmount');
    const line = mount.container.querySelector<HTMLElement>(
      '.jp-ComputeServers-mount'
    )!;
    expect(line.dataset.mountState).toBe('mounted');
    expect(line.textContent).toContain('/home/me/workspace/jupyter');
    act(() => button()!.click());
    expect(calls).toEqual(['unmount box']);
  });

  it('says that files fail while remounting, and why a mount failed', () => {
    render(
      makeServer({
        state: 'running',
        mount: {
          ...MOUNTED,
          state: 'remounting',
          reason: 'the connection dropped'
        }
      })
    );
    let line = mount.container.querySelector<HTMLElement>(
      '.jp-ComputeServers-mount'
    )!;
    expect(line.textContent).toContain('fail with an error');
    render(
      makeServer({
        state: 'running',
        mount: { ...MOUNTED, state: 'failed', reason: 'sshfs missing' }
      })
    );
    line = mount.container.querySelector<HTMLElement>(
      '.jp-ComputeServers-mount'
    )!;
    expect(line.getAttribute('role')).toBe('alert');
    expect(line.textContent).toContain('sshfs missing');
  });

  it('disables the button while a mount or another action is under way', () => {
    busy.add(1);
    render(makeServer({ state: 'running' }));
    expect(button()!.disabled).toBe(true);
    busy.clear();
    render(makeServer({ state: 'running' }), true);
    expect(button()!.disabled).toBe(true);
  });

  it('hears mount events (the list re-reads on them)', () => {
    const event = parseServerEvent({
      schema_id: SERVER_EVENT_SCHEMA,
      kind: 'mount',
      server_id: 1
    } as any);
    expect(event).toEqual({ kind: 'mount', server_id: 1 });
  });
});
