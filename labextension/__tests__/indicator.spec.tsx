/**
 * The notebook toolbar's compute server indicator: which server a session's kernel runs on,
 * from kernel specs and server states of a real `jupyter server` with the extension (see
 * jupyterServer.ts). The session is a stand-in with the parts the indicator reads.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { KernelSpecManager } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';
import { Signal } from '@lumino/signaling';
import * as React from 'react';

import {
  ComputeServerIndicator,
  ServerIndicator,
  sessionServer,
  sessionSpec
} from '../kernels/indicator';
import { ServersModel } from '../servers/model';
import { JupyterServer } from './jupyterServer';
import { mountReactPerTest, renderOutsideAct, until } from './testing';

jest.setTimeout(30000);

const api = new JupyterServer();
let specs: KernelSpecManager;
let servers: ServersModel;
let gpu: { id: number; color: string };

beforeAll(async () => {
  await api.start();
  gpu = await api.create('gpu-box', 'off');
  specs = new KernelSpecManager({ serverSettings: api.settings });
  await specs.ready;
  await specs.refreshSpecs();
  servers = new ServersModel(api.settings);
  await servers.refresh();
}, 90000);

afterAll(async () => {
  servers.dispose();
  specs.dispose();
  await api.stop();
}, 90000);

/** A notebook's session as far as the indicator reads it; `use` changes its kernel. */
class FakeSession {
  kernelChanged = new Signal<this, unknown>(this);
  sessionChanged = new Signal<this, unknown>(this);
  statusChanged = new Signal<this, unknown>(this);
  specsManager = specs;
  session: { kernel: { name: string } | null } | null = null;
  kernelDisplayName = 'No Kernel';

  get hasNoKernel(): boolean {
    return this.kernelDisplayName === 'No Kernel';
  }

  /** Run `kernel` (null: no kernel); `displayName` as JupyterLab shows it meanwhile. */
  use(kernel: string | null, displayName?: string): void {
    this.session = kernel ? { kernel: { name: kernel } } : null;
    this.kernelDisplayName =
      displayName ??
      (kernel ? specs.specs!.kernelspecs[kernel]!.display_name : 'No Kernel');
    this.kernelChanged.emit(null);
  }

  get context(): ISessionContext {
    return this as unknown as ISessionContext;
  }
}

describe('sessionServer', () => {
  it('names the server of a compute server kernel, and none for a local one', () => {
    const session = new FakeSession();
    expect(sessionServer(session.context)).toBeNull();

    session.use('python3');
    expect(sessionSpec(session.context)?.name).toBe('python3');
    expect(sessionServer(session.context)).toBeNull();

    session.use(`compute-${gpu.id}-python3`);
    expect(sessionServer(session.context)).toMatchObject({
      id: gpu.id,
      name: 'gpu-box',
      color: gpu.color,
      kernel_display_name: 'Python 3 (ipykernel)'
    });
  });

  it('names the server a kernel is being changed to, as the kernel name does', () => {
    const session = new FakeSession();
    // The local kernel still runs while the remote one starts.
    session.use('python3', 'Python 3 (ipykernel) on gpu-box');
    expect(sessionServer(session.context)?.name).toBe('gpu-box');
    // And back.
    session.use(`compute-${gpu.id}-python3`, 'Python 3 (ipykernel)');
    expect(sessionServer(session.context)).toBeNull();
  });
});

describe('ServerIndicator', () => {
  const mount = mountReactPerTest();
  const server = {
    id: 3,
    name: 'gpu-box',
    color: '#ff7f0e',
    cloud: 'local',
    kernel: 'python3',
    kernel_display_name: 'Python 3 (ipykernel)'
  };

  it("shows the server's colour and name, and says where the kernel runs", () => {
    mount.render(<ServerIndicator server={server} state="running" />);
    const body = mount.container.querySelector<HTMLElement>(
      '.jp-ComputeServers-indicatorBody'
    )!;
    expect(body.textContent).toBe('gpu-box');
    expect(
      body.querySelector<HTMLElement>('.jp-ComputeServers-indicatorDot')!.style
        .backgroundColor
    ).toBe('rgb(255, 127, 14)');
    expect(body.title).toBe(
      'The kernel Python 3 (ipykernel) runs on the compute server gpu-box (local), which is running.'
    );
  });

  it('shows the state while the server is not running', () => {
    mount.render(<ServerIndicator server={server} state="starting" />);
    expect(
      mount.container.querySelector('.jp-ComputeServers-indicatorState')!
        .textContent
    ).toBe('Starting');
    mount.render(<ServerIndicator server={server} />);
    expect(
      mount.container.querySelector('.jp-ComputeServers-indicatorState')
    ).toBeNull();
  });
});

describe('ComputeServerIndicator', () => {
  renderOutsideAct();
  let indicator: ComputeServerIndicator;

  afterEach(() => indicator?.dispose());

  it('is hidden for local kernels and follows kernel changes', async () => {
    const session = new FakeSession();
    indicator = new ComputeServerIndicator({
      sessionContext: session.context,
      model: servers
    });
    Widget.attach(indicator, document.body);
    expect(indicator.isHidden).toBe(true);
    expect(indicator.server).toBeNull();

    session.use(`compute-${gpu.id}-python3`);
    expect(indicator.isHidden).toBe(false);
    expect(indicator.server?.name).toBe('gpu-box');
    await until(() => indicator.node.textContent === 'gpu-boxOff');

    session.use('python3');
    expect(indicator.isHidden).toBe(true);
    session.use(null);
    expect(indicator.isHidden).toBe(true);
  });

  it("follows the server's state and its renaming", async () => {
    const session = new FakeSession();
    session.use(`compute-${gpu.id}-python3`);
    indicator = new ComputeServerIndicator({
      sessionContext: session.context,
      model: servers
    });
    Widget.attach(indicator, document.body);
    await until(() => indicator.node.textContent === 'gpu-boxOff');

    await api.act(gpu.id, 'start');
    await servers.refresh();
    await until(() => indicator.node.textContent === 'gpu-box');

    await api.call('PATCH', `servers/${gpu.id}`, { name: 'renamed' }, 200);
    await specs.refreshSpecs();
    // The session shows the renamed spec's display name too.
    session.kernelDisplayName = 'Python 3 (ipykernel) on renamed';
    session.statusChanged.emit(null);
    await until(() => indicator.node.textContent === 'renamed');
  });

  it('stops listening when disposed', () => {
    const session = new FakeSession();
    indicator = new ComputeServerIndicator({
      sessionContext: session.context
    });
    indicator.dispose();
    session.use(`compute-${gpu.id}-python3`);
    expect(indicator.server).toBeNull();
  });
});
