/**
 * Metrics of running compute servers: the model against a real `jupyter server` with a local
 * server (no GPU here: figures for CPU and RAM, and why there are none for GPUs), the poll that
 * samples them only while they show and the page is visible, the bars, and the sidebar.
 */
import { Widget } from '@lumino/widgets';
import * as React from 'react';

import {
  formatBytes,
  level,
  MetricsBars,
  percentOf,
  ServerMetricsView
} from '../metrics/bars';
import { MetricsLiveUpdates } from '../metrics/live';
import { ServerMetricsModel } from '../metrics/model';
import { IServerMetrics } from '../metrics/types';
import { ServersModel } from '../servers/model';
import { MetricsSection } from '../metrics/section';
import { ComputeServersSidebar } from '../sidebar';
import { StatusModel } from '../status';
import { JupyterServer, sleep } from './jupyterServer';
import { mountReactPerTest, renderOutsideAct, until } from './testing';

jest.setTimeout(60000);

/** Make the page hidden or visible, as a browser does when its tab is switched. */
function setPageHidden(hidden: boolean): void {
  Object.defineProperty(document, 'visibilityState', {
    configurable: true,
    get: () => (hidden ? 'hidden' : 'visible')
  });
  Object.defineProperty(document, 'hidden', {
    configurable: true,
    get: () => hidden
  });
  document.dispatchEvent(new Event('visibilitychange'));
}

describe('with a real server', () => {
  const api = new JupyterServer();

  beforeAll(() => api.start(), 90000);
  afterAll(() => api.stop(), 90000);
  beforeEach(async () => {
    await sleep(30);
    await api.cleanup();
  });

  function samples(serverId: number): number {
    return api.requests.filter(
      r => r.method === 'GET' && r.path.endsWith(`/servers/${serverId}/metrics`)
    ).length;
  }

  describe('ServerMetricsModel', () => {
    let model: ServerMetricsModel;

    beforeEach(() => {
      model = new ServerMetricsModel(api.settings);
    });
    afterEach(() => model.dispose());

    it('samples a running server: CPU and RAM, and why there are no GPU figures', async () => {
      const server = await api.create('box', 'running');
      expect(model.entry(server.id)).toEqual({
        value: null,
        loaded: false,
        error: null,
        at: 0
      });

      await model.refresh(server.id);

      const entry = model.entry(server.id);
      expect(entry.error).toBeNull();
      expect(entry.loaded).toBe(true);
      const metrics = entry.value!;
      expect(metrics.gpus).toEqual([]);
      expect(metrics.gpu_reason).toMatch(/\S/);
      expect(metrics.cpu_percent).toEqual(expect.any(Number));
      expect(metrics.cpu_count).toBeGreaterThan(0);
      expect(metrics.memory_total).toBeGreaterThan(0);
      expect(metrics.memory_used).toBeGreaterThan(0);
      expect(metrics.memory_used!).toBeLessThanOrEqual(metrics.memory_total!);
    });

    it('keeps why a server that is not running has none', async () => {
      const server = await api.create('off', 'off');
      await model.refresh(server.id);
      expect(model.entry(server.id).loaded).toBe(false);
      expect(model.entry(server.id).error).toBe(
        "Server 'off' is off; metrics need it running."
      );
    });
  });

  describe('MetricsLiveUpdates', () => {
    let servers: ServersModel;
    let metrics: ServerMetricsModel;
    let live: MetricsLiveUpdates;

    beforeEach(() => {
      servers = new ServersModel(api.settings);
      metrics = new ServerMetricsModel(api.settings);
    });
    afterEach(() => {
      live?.dispose();
      metrics.dispose();
      servers.dispose();
      setPageHidden(false);
    });

    it('samples every few seconds while shown, and not at all while not', async () => {
      const server = await api.create('box', 'running');
      await servers.refresh();
      live = new MetricsLiveUpdates({ metrics, servers, interval: 150 });
      await sleep(500);
      expect(samples(server.id)).toBe(0);

      metrics.watched = true;
      await until(() => samples(server.id) >= 3, 10000);
      expect(metrics.entry(server.id).value!.memory_total).toBeGreaterThan(0);

      metrics.watched = false;
      await sleep(300);
      const count = samples(server.id);
      await sleep(600);
      expect(samples(server.id)).toBe(count);
    });

    it('stands by while the page is hidden', async () => {
      const server = await api.create('box', 'running');
      await servers.refresh();
      live = new MetricsLiveUpdates({ metrics, servers, interval: 150 });
      metrics.watched = true;
      await until(() => samples(server.id) >= 2, 10000);

      setPageHidden(true);
      // Lumino's poll lingers one tick after the page hides, then stands by.
      await sleep(700);
      const count = samples(server.id);
      await sleep(600);
      expect(samples(server.id)).toBe(count);

      setPageHidden(false);
      await until(() => samples(server.id) > count, 10000);
    });

    it('samples a server as it starts, and forgets it when it stops', async () => {
      const server = await api.create('box', 'off');
      await servers.refresh();
      live = new MetricsLiveUpdates({ metrics, servers, interval: 60000 });
      metrics.watched = true;
      await sleep(200);
      expect(samples(server.id)).toBe(0);

      await api.act(server.id, 'start');
      await servers.refresh();
      await until(() => metrics.entry(server.id).loaded, 10000);

      await api.act(server.id, 'stop');
      await servers.refresh();
      expect(metrics.entry(server.id).loaded).toBe(false);
    });
  });

  describe('the sidebar', () => {
    renderOutsideAct();

    it("shows a running server's CPU and RAM bars while it shows", async () => {
      const server = await api.create('box', 'running');
      const servers = new ServersModel(api.settings);
      const metrics = new ServerMetricsModel(api.settings);
      const live = new MetricsLiveUpdates({ metrics, servers, interval: 200 });
      await servers.refresh();
      const sidebar = new ComputeServersSidebar({
        status: new StatusModel(api.settings),
        model: servers
      });
      sidebar.addSection(new MetricsSection(metrics));
      sidebar.hide();
      Widget.attach(sidebar, document.body);
      expect(metrics.watched).toBe(false);

      sidebar.show();
      expect(metrics.watched).toBe(true);
      const bar = (name: string) =>
        sidebar.node.querySelector<HTMLElement>(
          `.jp-ComputeServers-server[data-server-id="${server.id}"] [data-metric="${name}"]`
        );
      await until(() => bar('cpu') !== null && bar('memory') !== null, 10000);
      expect(
        bar('memory')!.querySelector('.jp-ComputeServers-metricValue')!
          .textContent
      ).toMatch(/^[\d.]+ [GM]B \/ [\d.]+ [GM]B$/);
      expect(
        bar('cpu')!
          .querySelector('[role="meter"]')!
          .getAttribute('aria-valuenow')
      ).toMatch(/^\d+$/);
      // A CPU-only server: why there are no GPU figures is in the tooltip only.
      expect(sidebar.node.querySelector('[data-note="gpu"]')).toBeNull();
      expect(
        sidebar.node.querySelector<HTMLElement>('.jp-ComputeServers-metrics')!
          .title
      ).toMatch(/^No GPU figures: /);

      sidebar.hide();
      expect(metrics.watched).toBe(false);
      sidebar.dispose();
      live.dispose();
      metrics.dispose();
      servers.dispose();
    });
  });
});

const SAMPLE: IServerMetrics = {
  time: 1700000000,
  gpus: [
    {
      index: 0,
      uuid: 'GPU-0',
      name: 'NVIDIA A100',
      utilization: 37,
      memory_used: 20 * 2 ** 30,
      memory_total: 80 * 2 ** 30,
      temperature: 54,
      power_watts: 120.4,
      power_limit_watts: 400
    },
    {
      index: 1,
      uuid: 'GPU-1',
      name: 'NVIDIA A100',
      utilization: null,
      memory_used: 79 * 2 ** 30,
      memory_total: 80 * 2 ** 30,
      temperature: null,
      power_watts: null,
      power_limit_watts: null
    }
  ],
  gpu_reason: '',
  cpu_percent: 62.4,
  cpu_count: 8,
  memory_total: 16 * 2 ** 30,
  memory_used: 3.2 * 2 ** 30
};

describe('the metrics bars', () => {
  const mount = mountReactPerTest();

  const bar = (name: string) =>
    mount.container.querySelector<HTMLElement>(`[data-metric="${name}"]`)!;
  const value = (name: string) =>
    bar(name).querySelector('.jp-ComputeServers-metricValue')!.textContent;
  const fill = (name: string) =>
    bar(name).querySelector<HTMLElement>('.jp-ComputeServers-metricFill');

  it('show each GPU, then CPU and RAM, with values and details', () => {
    mount.render(<MetricsBars metrics={SAMPLE} />);
    expect(
      Array.from(
        mount.container.querySelectorAll<HTMLElement>('[data-metric]')
      ).map(b => [
        b.dataset.metric,
        b.querySelector('.jp-ComputeServers-metricLabel')!.textContent
      ])
    ).toEqual([
      ['gpu-0-util', 'GPU 0'],
      ['gpu-0-memory', 'GPU 0 mem'],
      ['gpu-1-util', 'GPU 1'],
      ['gpu-1-memory', 'GPU 1 mem'],
      ['cpu', 'CPU'],
      ['memory', 'RAM']
    ]);
    expect(value('gpu-0-util')).toBe('37%');
    expect(fill('gpu-0-util')!.style.width).toBe('37%');
    expect(fill('gpu-0-util')!.dataset.level).toBe('low');
    expect(value('gpu-0-memory')).toBe('20 GB / 80 GB');
    expect(bar('gpu-0-util').title).toBe(
      'NVIDIA A100 (GPU 0), 37% busy, memory 20 GB of 80 GB, 54 °C, 120 W of 400 W'
    );
    // Utilization unknown (MIG): an empty bar that says so.
    expect(value('gpu-1-util')).toBe('n/a');
    expect(fill('gpu-1-util')).toBeNull();
    expect(bar('gpu-1-util').title).toContain('utilization unknown');
    expect(fill('gpu-1-memory')!.dataset.level).toBe('high');
    expect(value('cpu')).toBe('62%');
    expect(fill('cpu')!.dataset.level).toBe('mid');
    expect(bar('cpu').title).toBe('CPU 62% busy of 8 CPUs');
    expect(value('memory')).toBe('3.2 GB / 16 GB');
    const meter = bar('memory').querySelector('[role="meter"]')!;
    expect(meter.getAttribute('aria-valuenow')).toBe('20');
    expect(meter.getAttribute('aria-valuetext')).toBe('3.2 GB / 16 GB');
  });

  it("show this server's own use beside a shared GPU's figures", () => {
    const shared: IServerMetrics = {
      ...SAMPLE,
      gpus: [
        {
          ...SAMPLE.gpus[0],
          utilization: 70,
          shared: true,
          own: { memory_used: 6.1 * 2 ** 30, utilization: 40, processes: 2 }
        },
        // A GPU of its own: nothing more to say than the whole GPU's figures.
        {
          ...SAMPLE.gpus[1],
          shared: false,
          own: { memory_used: 0, utilization: 0, processes: 0 }
        }
      ]
    };
    mount.render(<MetricsBars metrics={shared} />);
    expect(value('gpu-0-util')).toBe('70%');
    expect(value('gpu-0-own')).toBe('this server: 6.1 GB, 40%');
    expect(fill('gpu-0-own')!.style.width).toBe('40%');
    expect(bar('gpu-0-own').title).toContain('2 processes');
    expect(
      mount.container.querySelector('[data-metric="gpu-1-own"]')
    ).toBeNull();
    // Per-process samples the driver does not give: said, not shown as 0.
    const unknown: IServerMetrics = {
      ...shared,
      gpus: [
        {
          ...shared.gpus[0],
          own: { memory_used: 2 ** 30, utilization: null, processes: 1 }
        }
      ]
    };
    mount.render(<MetricsBars metrics={unknown} />);
    expect(value('gpu-0-own')).toBe('this server: 1 GB, use unknown');
    expect(fill('gpu-0-own')).toBeNull();
    expect(mount.container.querySelector('[data-note="gpu-0-mps"]')).toBeNull();
    // The host's watch restarted the GPU's MPS daemon under this server: said beside it.
    const warning =
      'The MPS daemon of GPU GPU-1 stopped and was restarted at 2026-12-06 05:00:00 UTC; ' +
      'processes started before may have lost their GPU context.';
    mount.render(
      <MetricsBars
        metrics={{
          ...shared,
          gpus: [{ ...shared.gpus[0], mps_warning: warning }]
        }}
      />
    );
    expect(
      mount.container.querySelector('[data-note="gpu-0-mps"]')!.textContent
    ).toBe(warning);
  });

  it('say why there are no GPU figures for a server that asked for GPUs', () => {
    const noGpu = { ...SAMPLE, gpus: [], gpu_reason: 'no NVIDIA driver' };
    const entry = { value: noGpu, loaded: true, error: null, at: 1 };
    mount.render(
      <ServerMetricsView serverName="box" entry={entry} wantsGpu={true} />
    );
    expect(
      mount.container.querySelector('[data-note="gpu"]')!.textContent
    ).toBe('No GPU figures: no NVIDIA driver');
    mount.render(
      <ServerMetricsView serverName="box" entry={entry} wantsGpu={false} />
    );
    expect(mount.container.querySelector('[data-note="gpu"]')).toBeNull();
  });

  it('say when reading, and keep the last figures when a sample fails', () => {
    mount.render(
      <ServerMetricsView
        serverName="box"
        entry={{ value: null, loaded: false, error: null, at: 0 }}
      />
    );
    expect(mount.container.textContent).toBe('Reading the metrics…');
    mount.render(
      <ServerMetricsView
        serverName="box"
        entry={{
          value: SAMPLE,
          loaded: true,
          error: 'Cannot reach box',
          at: 1
        }}
      />
    );
    expect(value('cpu')).toBe('62%');
    expect(
      mount.container.querySelector(
        '.jp-ComputeServers-metricsNote.jp-mod-error'
      )!.textContent
    ).toBe('Metrics not updated: Cannot reach box');
    mount.render(
      <ServerMetricsView
        serverName="box"
        entry={{ value: null, loaded: false, error: 'Cannot reach box', at: 0 }}
      />
    );
    expect(mount.container.textContent).toBe('No metrics: Cannot reach box');
  });

  it('format sizes and shares', () => {
    expect(formatBytes(512 * 2 ** 20)).toBe('512 MB');
    expect(formatBytes(1.25 * 2 ** 30)).toBe('1.3 GB');
    expect(formatBytes(250 * 2 ** 30)).toBe('250 GB');
    expect(percentOf(1, 4)).toBe(25);
    expect(percentOf(5, 4)).toBe(100);
    expect(percentOf(null, 4)).toBeNull();
    expect(percentOf(1, 0)).toBeNull();
    expect([level(10), level(60), level(95)]).toEqual(['low', 'mid', 'high']);
  });
});
