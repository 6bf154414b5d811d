/**
 * The kernels running on compute servers: the model and its live updates against a real
 * `jupyter server` with the extension (see jupyterServer.ts), with kernels really started on
 * local compute servers, an orphan left by a Jupyter server that went away, and the sidebar's
 * list of them.
 */
import { Widget } from '@lumino/widgets';
import * as React from 'react';
import { act } from 'react';

import { KernelsLiveUpdates } from '../kernels/live';
import {
  describeShutdownError,
  formatAge,
  kernelLabel,
  ORPHAN_CAPTION,
  ServerKernels
} from '../kernels/list';
import { ServerKernelsModel } from '../kernels/model';
import { KernelsSection } from '../kernels/section';
import { IRemoteKernel } from '../kernels/types';
import { ApiError } from '../request';
import { ServersModel } from '../servers/model';
import { ComputeServersSidebar } from '../sidebar';
import { StatusModel } from '../status';
import { IServerEntry } from '../tokens';
import { JupyterServer, sleep } from './jupyterServer';
import {
  FakeEvents,
  mountReactPerTest,
  renderOutsideAct,
  until
} from './testing';

jest.setTimeout(60000);

describe('with a real server', () => {
  const api = new JupyterServer();

  beforeAll(() => api.start(), 90000);
  afterAll(() => api.stop(), 90000);
  beforeEach(async () => {
    await sleep(30);
    await api.cleanup();
  });

  function gets(serverId: number): number {
    return api.requests.filter(
      r =>
        r.method === 'GET' &&
        r.path === `/compute-servers/api/servers/${serverId}/kernels`
    ).length;
  }

  describe('ServerKernelsModel', () => {
    let model: ServerKernelsModel;

    beforeEach(() => {
      model = new ServerKernelsModel(api.settings);
    });

    afterEach(() => model.dispose());

    it('lists the kernels running on a server, and shuts one down', async () => {
      const server = await api.create('box', 'running');
      const kernel = await api.startKernel(`compute-${server.id}-python3`);
      const changes: number[] = [];
      model.changed.connect((_, id) => changes.push(id));
      expect(model.entry(server.id)).toEqual({
        value: [],
        loaded: false,
        error: null,
        at: 0
      });

      await model.refresh(server.id);

      const entry = model.entry(server.id);
      expect(entry.loaded).toBe(true);
      expect(entry.error).toBeNull();
      expect(entry.value).toEqual([
        {
          kernel_id: kernel.id,
          kernel: 'python3',
          display_name: 'Python 3 (ipykernel) on box',
          pid: expect.any(Number),
          cwd: expect.any(String),
          owner: expect.any(String),
          started: expect.any(Number),
          attached: true
        }
      ]);
      expect(Date.now() / 1000 - entry.value[0].started!).toBeLessThan(60);
      expect(changes).toEqual([server.id]);

      await model.shutdown(server.id, kernel.id);

      expect(model.entry(server.id).value).toEqual([]);
      expect(api.requests.map(r => `${r.method} ${r.path}`)).toContain(
        `DELETE /compute-servers/api/servers/${server.id}/kernels/${kernel.id}`
      );
      // Through Jupyter's kernel manager: Jupyter knows it is gone.
      expect(await api.jupyter('GET', 'api/kernels')).toEqual([]);
      await until(() => gets(server.id) === 2);
    });

    it('has no kernels for a server that is not running', async () => {
      const server = await api.create('off', 'deprovisioned');
      await model.refresh(server.id);
      expect(model.entry(server.id)).toEqual({
        value: [],
        loaded: true,
        error: null,
        at: expect.any(Number)
      });
    });

    it('keeps what it had and says why when reading fails', async () => {
      await model.refresh(999);
      expect(model.entry(999).loaded).toBe(false);
      expect(model.entry(999).error).toMatch(/999/);
    });

    it("passes on the server's refusal to shut down an unknown kernel", async () => {
      const server = await api.create('box', 'running');
      const error = await model
        .shutdown(server.id, 'no-such-kernel')
        .catch(e => e);
      expect(error).toBeInstanceOf(ApiError);
      expect(error.status).toBe(404);
      expect(error.message).toBe("No kernel no-such-kernel runs on 'box'.");
      // The list is read again: it may have changed meanwhile.
      await until(() => gets(server.id) === 1);
    });

    it('forgets a server', async () => {
      const server = await api.create('box', 'running');
      await model.refresh(server.id);
      let changes = 0;
      model.changed.connect(() => changes++);

      model.forget(server.id);
      model.forget(server.id);

      expect(model.entry(server.id).loaded).toBe(false);
      expect(changes).toBe(1);
    });
  });

  describe('orphans', () => {
    it('lists a kernel whose Jupyter server went away as an orphan, and ends it', async () => {
      const first = new JupyterServer();
      await first.start();
      let second: JupyterServer | null = null;
      try {
        const server = await first.create('box', 'running');
        const kernel = await first.startKernel(`compute-${server.id}-python3`);
        // Its Jupyter server goes away: nobody shuts the kernel down.
        await first.kill();

        // Another Jupyter server on the same compute servers, one that does not adopt the
        // kernels it finds (else, once adopted, the kernel is its own: attached).
        second = new JupyterServer({
          dataDir: first.dataDir,
          config: { ComputeServersApp: { adopt_orphan_kernels: false } }
        });
        await second.start();
        const model = new ServerKernelsModel(second.settings);
        await model.refresh(server.id);
        expect(model.entry(server.id).value).toEqual([
          expect.objectContaining({ kernel_id: kernel.id, attached: false })
        ]);

        await model.shutdown(server.id, kernel.id);

        expect(model.entry(server.id).value).toEqual([]);
        await model.refresh(server.id);
        expect(model.entry(server.id).value).toEqual([]);
        model.dispose();
      } finally {
        await second?.stop();
        await first.stop();
      }
    });
  });

  describe('KernelsLiveUpdates', () => {
    let servers: ServersModel;
    let kernels: ServerKernelsModel;
    let events: FakeEvents;
    let live: KernelsLiveUpdates;

    beforeEach(() => {
      servers = new ServersModel(api.settings);
      kernels = new ServerKernelsModel(api.settings);
      events = new FakeEvents();
    });

    afterEach(() => {
      live?.dispose();
      events.dispose();
      kernels.dispose();
      servers.dispose();
    });

    function start(interval = 60 * 1000): void {
      live = new KernelsLiveUpdates({
        kernels,
        servers,
        events: events.service,
        interval,
        auto: interval < 60 * 1000
      });
    }

    function emit(kind: string, serverId: number): void {
      events.server(kind, serverId);
    }

    it('re-reads a server once after a burst of its kernels events, while watched', async () => {
      const server = await api.create('box', 'running');
      await servers.refresh();
      start();

      emit('kernels', server.id);
      await sleep(300);
      expect(gets(server.id)).toBe(0);

      kernels.watched = true;
      await until(() => kernels.entry(server.id).loaded);
      expect(gets(server.id)).toBe(1);

      await api.startKernel(`compute-${server.id}-python3`);
      for (let i = 0; i < 4; i++) {
        emit('kernels', server.id);
      }
      emit('state', server.id);
      await until(() => kernels.entry(server.id).value.length === 1);
      await sleep(300);
      expect(gets(server.id)).toBe(2);
    });

    it('reads the kernels of a server that starts, and forgets a server that stops', async () => {
      const server = await api.create('box', 'off');
      await servers.refresh();
      start();
      kernels.watched = true;
      await sleep(100);
      expect(gets(server.id)).toBe(0);

      await api.act(server.id, 'start');
      await servers.refresh();
      await until(() => kernels.entry(server.id).loaded);

      await api.act(server.id, 'stop');
      await servers.refresh();
      expect(kernels.entry(server.id).loaded).toBe(false);
    });

    it('does not read while not watched, not even when a server starts', async () => {
      const server = await api.create('box', 'off');
      await servers.refresh();
      start();
      await api.act(server.id, 'start');
      await servers.refresh();
      await sleep(300);
      expect(gets(server.id)).toBe(0);
    });

    it('polls the running servers only while watched', async () => {
      const server = await api.create('box', 'running');
      await servers.refresh();
      start(100);
      await sleep(400);
      expect(gets(server.id)).toBe(0);

      kernels.watched = true;
      await until(() => gets(server.id) >= 3);

      kernels.watched = false;
      await sleep(150);
      const count = gets(server.id);
      await sleep(400);
      expect(gets(server.id)).toBe(count);
    });

    it('stops listening when disposed', async () => {
      const server = await api.create('box', 'running');
      await servers.refresh();
      start();
      live.dispose();
      kernels.watched = true;
      emit('kernels', server.id);
      await sleep(300);
      expect(live.isDisposed).toBe(true);
      expect(gets(server.id)).toBe(0);
    });
  });

  describe('the sidebar', () => {
    renderOutsideAct();
    let sidebar: ComputeServersSidebar;
    let servers: ServersModel;
    let kernels: ServerKernelsModel;

    afterEach(() => {
      sidebar?.dispose();
      kernels?.dispose();
      servers?.dispose();
    });

    it("lists a running server's kernels while it shows, and shuts one down", async () => {
      const server = await api.create('box', 'running');
      const kernel = await api.startKernel(`compute-${server.id}-python3`);
      servers = new ServersModel(api.settings);
      kernels = new ServerKernelsModel(api.settings);
      const live = new KernelsLiveUpdates({
        kernels,
        servers,
        interval: 60 * 1000,
        auto: false
      });
      await servers.refresh();
      sidebar = new ComputeServersSidebar({
        status: new StatusModel(api.settings),
        model: servers
      });
      sidebar.addSection(
        new KernelsSection({
          kernels,
          sessionPath: id => (id === kernel.id ? 'work/a.ipynb' : null)
        })
      );
      sidebar.hide();
      Widget.attach(sidebar, document.body);
      expect(kernels.watched).toBe(false);

      sidebar.show();
      expect(kernels.watched).toBe(true);
      const row = () =>
        sidebar.node.querySelector<HTMLElement>(
          `.jp-ComputeServers-kernel[data-kernel-id="${kernel.id}"]`
        );
      await until(() => row() !== null, 10000);
      expect(
        row()!.querySelector('.jp-ComputeServers-kernelName')!.textContent
      ).toBe('Python 3 (ipykernel)');
      expect(
        row()!.querySelector('.jp-ComputeServers-kernelPath')!.textContent
      ).toBe('work/a.ipynb');
      expect(row()!.querySelector('.jp-ComputeServers-orphan')).toBeNull();

      row()!
        .querySelector<HTMLButtonElement>('.jp-ComputeServers-kernelShutdown')!
        .click();
      await until(() => row() === null, 10000);
      expect(
        sidebar.node.querySelector('.jp-ComputeServers-kernelsHeader')!
          .textContent
      ).toBe('No kernels running');
      expect(await api.jupyter('GET', 'api/kernels')).toEqual([]);

      sidebar.hide();
      expect(kernels.watched).toBe(false);
      live.dispose();
    });
  });
});

describe('the kernel list', () => {
  const mount = mountReactPerTest();

  function kernel(overrides: Partial<IRemoteKernel> = {}): IRemoteKernel {
    return {
      kernel_id: 'k1',
      kernel: 'python3',
      display_name: 'Python 3 (ipykernel) on gpu-box',
      pid: 4242,
      cwd: '.',
      owner: 'vm:1',
      started: 1000,
      attached: true,
      ...overrides
    };
  }

  function render(
    entry: Partial<IServerEntry<ReadonlyArray<IRemoteKernel>>>,
    props: Partial<React.ComponentProps<typeof ServerKernels>> = {}
  ): void {
    mount.render(
      <ServerKernels
        serverName="gpu-box"
        entry={{ value: [], loaded: true, error: null, at: 0, ...entry }}
        onShutdown={async () => undefined}
        now={1000 + 754}
        {...props}
      />
    );
  }

  function item(id: string): HTMLElement {
    return mount.container.querySelector<HTMLElement>(
      `.jp-ComputeServers-kernel[data-kernel-id="${id}"]`
    )!;
  }

  it('shows each kernel with its name, age and a Shut down button', () => {
    render({ value: [kernel()] });

    expect(
      mount.container.querySelector('.jp-ComputeServers-kernelsHeader')!
        .textContent
    ).toBe('1 kernel running');
    const row = item('k1');
    expect(row.dataset.attached).toBe('true');
    expect(
      row.querySelector('.jp-ComputeServers-kernelName')!.textContent
    ).toBe('Python 3 (ipykernel)');
    expect(
      row.querySelector<HTMLElement>('.jp-ComputeServers-kernelName')!.title
    ).toBe(
      'Python 3 (ipykernel) on gpu-box\nKernel id: k1\nProcess 4242 on gpu-box'
    );
    expect(row.querySelector('.jp-ComputeServers-kernelAge')!.textContent).toBe(
      '12 min'
    );
    expect(row.querySelector('.jp-ComputeServers-orphan')).toBeNull();
    expect(
      row.querySelector('.jp-ComputeServers-kernelShutdown')!.textContent
    ).toBe('Shut down');
  });

  it('marks orphans, and says what they are', () => {
    render({
      value: [kernel({ kernel_id: 'k2', attached: false }), kernel()]
    });

    expect(
      mount.container.querySelector('.jp-ComputeServers-kernelsHeader')!
        .textContent
    ).toBe('2 kernels running');
    const orphan = item('k2').querySelector<HTMLElement>(
      '.jp-ComputeServers-orphan'
    )!;
    expect(orphan.textContent).toBe('orphan');
    expect(orphan.title).toBe(ORPHAN_CAPTION);
    expect(orphan.title).toContain('holding GPUs');
    expect(item('k2').dataset.attached).toBe('false');
    expect(item('k1').querySelector('.jp-ComputeServers-orphan')).toBeNull();
  });

  it('disables the button while shutting down, and shows why it failed', async () => {
    let fail: (error: unknown) => void = () => undefined;
    const asked: string[] = [];
    render(
      { value: [kernel()] },
      {
        onShutdown: k => {
          asked.push(k.kernel_id);
          return new Promise((_, reject) => {
            fail = reject;
          });
        }
      }
    );
    const button = () =>
      item('k1').querySelector<HTMLButtonElement>(
        '.jp-ComputeServers-kernelShutdown'
      )!;

    act(() => button().click());
    expect(asked).toEqual(['k1']);
    expect(button().disabled).toBe(true);
    expect(button().textContent).toBe('Shutting down…');
    act(() => button().click());
    expect(asked).toEqual(['k1']);

    await act(async () => {
      fail(new ApiError(502, 'Cannot reach gpu-box: connection refused.'));
      await sleep(0);
    });

    expect(button().disabled).toBe(false);
    const error = item('k1').querySelector('.jp-ComputeServers-kernelError')!;
    expect(error.getAttribute('role')).toBe('alert');
    expect(error.textContent).toBe(
      'Could not shut down Python 3 (ipykernel): Cannot reach gpu-box: connection refused. ' +
        'Check that gpu-box is running and reachable (its state in this panel), then try again.'
    );
  });

  it('says when reading the kernels failed, with a way to try again', () => {
    let retried = 0;
    render(
      { loaded: false, error: 'Cannot reach gpu-box.' },
      { onRetry: () => retried++ }
    );

    const error = mount.container.querySelector(
      '.jp-ComputeServers-kernelsError'
    )!;
    expect(error.textContent).toContain(
      'Could not read the kernels on gpu-box: Cannot reach gpu-box.'
    );
    act(() =>
      error
        .querySelector<HTMLButtonElement>('.jp-ComputeServers-kernelsRetry')!
        .click()
    );
    expect(retried).toBe(1);
  });

  it('says when there are none, and while reading', () => {
    render({});
    expect(mount.container.textContent).toBe('No kernels running');
    render({ loaded: false });
    expect(mount.container.textContent).toBe('Reading the kernels…');
  });
});

describe('formatting', () => {
  it('says ages in a few characters', () => {
    expect(formatAge(-5)).toBe('0 s');
    expect(formatAge(42.7)).toBe('42 s');
    expect(formatAge(60)).toBe('1 min');
    expect(formatAge(59 * 60 + 59)).toBe('59 min');
    expect(formatAge(3600)).toBe('1 h');
    expect(formatAge(3 * 3600 + 5 * 60)).toBe('3 h 5 min');
    expect(formatAge(50 * 3600)).toBe('2 d');
  });

  it('drops the server from kernel names', () => {
    const k = (display_name: string) =>
      ({ display_name, kernel: 'ir', kernel_id: 'k' }) as IRemoteKernel;
    expect(kernelLabel(k('R on gpu-box'), 'gpu-box')).toBe('R');
    expect(kernelLabel(k('R on cpu'), 'gpu-box')).toBe('R on cpu');
    expect(kernelLabel(k(' on gpu-box'), 'gpu-box')).toBe(' on gpu-box');
    expect(kernelLabel(k(''), 'gpu-box')).toBe('ir');
  });

  it('says what to do about a failed shut down', () => {
    expect(
      describeShutdownError(new ApiError(404, 'No kernel k runs.'), 'box')
    ).toBe(
      'No kernel k runs. It has probably ended already; the list has been read again.'
    );
    expect(
      describeShutdownError(new ApiError(403, 'Forbidden.'), 'box')
    ).toContain('not allowed');
    expect(describeShutdownError(new Error('boom'), 'box')).toBe(
      "boom Try again; if it keeps failing, see the Jupyter server's log."
    );
  });
});
