/**
 * Web apps on compute servers against a real `jupyter server` with the extension (see
 * jupyterServer.ts) and a real local compute server: the model reads the image's apps and the
 * open ports, starts and stops TensorBoard; then the sidebar's section on its own (the row's
 * button, the started app with Open and Stop, the port form).
 */
import * as React from 'react';
import { act } from 'react';

import { ServerAppsModel } from '../apps/model';
import { AppsSection } from '../apps/section';
import { declaredApps, IImageApp, IServerWebApps } from '../apps/types';
import { IServer } from '../servers/types';
import { JupyterServer, sleep } from './jupyterServer';
import { mountReactPerTest, typeInto } from './testing';

jest.setTimeout(90000);

const TENSORBOARD: IImageApp = {
  name: 'tensorboard',
  label: 'TensorBoard',
  command: ['python3', '-m', 'tensorboard.main']
};

describe('with a real server', () => {
  const api = new JupyterServer();
  let server: IServer;

  beforeAll(async () => {
    await api.start();
    server = await api.create('apps-box', 'running');
  }, 90000);
  afterAll(async () => {
    await api.cleanup();
    await api.stop();
  }, 90000);

  it('lists the image apps and the open ports, starts and stops TensorBoard', async () => {
    const model = new ServerAppsModel(api.settings);
    await model.refresh(server.id);
    let entry = model.entry(server.id);
    expect(entry.error).toBeNull();
    expect(entry.value.apps.map(a => [a.name, a.state])).toEqual([
      ['tensorboard', 'stopped']
    ]);
    expect(Array.isArray(entry.value.ports)).toBe(true);

    const started = await model.start(server.id, 'tensorboard');
    expect(started.state).toBe('running');
    expect(started.url).toContain(
      `compute-servers/servers/${server.id}/apps/tensorboard/`
    );
    // It is listed as running, and its port among the server's open ports once it listens.
    const end = Date.now() + 60000;
    for (;;) {
      await model.refresh(server.id);
      const value = model.entry(server.id).value;
      if (
        value.apps[0]?.state === 'running' &&
        value.ports.some(p => p.port === started.port)
      ) {
        break;
      }
      if (Date.now() > end) {
        throw new Error(`TensorBoard never listened: ${JSON.stringify(value)}`);
      }
      await sleep(200);
    }
    await model.stop(server.id, 'tensorboard');
    await model.refresh(server.id);
    entry = model.entry(server.id);
    expect(entry.value.apps[0].state).toBe('stopped');
  });
});

describe('AppsSection', () => {
  const mount = mountReactPerTest();
  const running = { id: 7, name: 'gpu-box', state: 'running' } as IServer;

  it('offers the image apps in a running server row, and nothing when it is off', () => {
    const opened: string[] = [];
    const section = new AppsSection({
      model: new ServerAppsModel(),
      declared: () => [TENSORBOARD],
      onOpenApp: (s, name) => opened.push(`${s.name}:${name}`),
      onOpenPort: () => undefined
    });
    mount.render(<>{section.renderActions(running, false)}</>);
    const button = mount.container.querySelector(
      'button.jp-ComputeServers-openApp[data-app="tensorboard"]'
    ) as HTMLButtonElement;
    expect(button.textContent).toBe('TensorBoard');
    act(() => button.click());
    expect(opened).toEqual(['gpu-box:tensorboard']);
    expect(section.renderActions({ ...running, state: 'off' }, false)).toBe(
      null
    );
  });

  it('lists a started app with Open and Stop, other ports, and opens a port by number', async () => {
    const model = new ServerAppsModel();
    const value: IServerWebApps = {
      apps: [
        {
          name: 'tensorboard',
          label: 'TensorBoard',
          icon: null,
          gpu: false,
          state: 'running',
          port: 40001,
          exit_code: null,
          url: '/compute-servers/servers/7/apps/tensorboard/'
        }
      ],
      ports: [
        { port: 40001, pid: 1, command: 'tensorboard', url: '' },
        {
          port: 8000,
          pid: 2,
          command: 'python -m http.server',
          url: '/compute-servers/servers/7/proxy/8000/'
        }
      ]
    };
    (model as any).set(7, { value, loaded: true, error: null, at: 1 });
    const opened: string[] = [];
    const section = new AppsSection({
      model,
      declared: () => [TENSORBOARD],
      onOpenApp: (_, name) => opened.push(name),
      onOpenPort: (_, port) => opened.push(String(port))
    });
    mount.render(<>{section.renderDetails(running)}</>);
    const app = mount.container.querySelector(
      '.jp-ComputeServers-app[data-app="tensorboard"]'
    )!;
    expect(app.querySelector('.jp-ComputeServers-appStop')).not.toBeNull();
    // The app's own port is not listed again among the ports.
    const ports = Array.from(
      mount.container.querySelectorAll('.jp-ComputeServers-port')
    ).map(li => li.getAttribute('data-port'));
    expect(ports).toEqual(['8000']);
    act(() =>
      (
        mount.container.querySelector(
          '.jp-ComputeServers-port .jp-ComputeServers-portOpen'
        ) as HTMLButtonElement
      ).click()
    );
    const submit = mount.container.querySelector(
      '.jp-ComputeServers-openPort button'
    ) as HTMLButtonElement;
    expect(submit.disabled).toBe(true);
    const input = mount.container.querySelector(
      '.jp-ComputeServers-openPort input'
    ) as HTMLInputElement;
    act(() => typeInto(input, '6006'));
    expect(submit.disabled).toBe(false);
    act(() => submit.click());
    expect(opened).toEqual(['8000', '6006']);
  });
});

describe('declaredApps', () => {
  it('takes the image apps, or those of the python runtime image without one', () => {
    const images: any[] = [
      { id: 'python', runtime: { kind: 'python' }, apps: [TENSORBOARD] },
      { id: 'r', runtime: { kind: 'docker' } }
    ];
    expect(declaredApps(images, null).map(a => a.name)).toEqual([
      'tensorboard'
    ]);
    expect(declaredApps(images, 'r')).toEqual([]);
    expect(declaredApps(images, 'python')).toHaveLength(1);
  });
});
