/**
 * The live cost estimate: how it reads (from `POST estimate` answers recorded from the real
 * server, fixtures/estimates.json: a gcp VM with a T4 on demand, and the same as spot, whose
 * machine has a dated spot price (limits count it at on-demand) and whose T4 has none), how it is asked for as options change,
 * and, against a real `jupyter server` with a rate card for the local cloud, the create
 * dialog's line following the CPUs; every gcp combination the picker offers is one the server
 * accepts.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as React from 'react';

import { CreateServerBody, CreateServerDialog } from '../servers/createDialog';
import { buildConfig, initialValues } from '../servers/createForm';
import { ServersModel } from '../servers/model';
import { ICloud } from '../servers/types';
import {
  EstimateTracker,
  estimateSummary,
  formatPartPrice,
  formatRate,
  formatUsd,
  limitCountNote,
  parseHoursPerDay,
  unknownParts
} from '../create/estimate';
import { EstimateView } from '../create/estimateView';
import {
  gcpOfferings,
  gpuCountOptions,
  machineTypeOptions,
  withGcpGpuCount,
  withGcpGpuType,
  withGcpMachineType
} from '../create/hardware';
import { IEstimate, IEstimateRequest } from '../create/types';
import { ApiError } from '../request';
import { JupyterServer, sleep } from './jupyterServer';
import {
  mountReactPerTest,
  renderOutsideAct,
  typeInto,
  until
} from './testing';
import ESTIMATES from './fixtures/estimates.json';
import GCP_JSON from './fixtures/gcpCloud.json';

const ON_DEMAND = ESTIMATES.gcpOnDemand as unknown as IEstimate;
const SPOT = ESTIMATES.gcpSpot as unknown as IEstimate;
/** The on-demand VM without its suspended rate (whose memory price is not known): complete. */
const COMPLETE: IEstimate = {
  ...ON_DEMAND,
  rates: { ...ON_DEMAND.rates, suspended: null },
  complete: true
};

describe('how an estimate reads', () => {
  it('says dollars plainly, a small rate not as free', () => {
    expect(formatUsd(0)).toBe('$0');
    expect(formatUsd(0.38)).toBe('$0.38');
    expect(formatUsd(0.551848)).toBe('$0.55');
    expect(formatUsd(0.006849)).toBe('$0.0068');
    expect(formatUsd(274.4)).toBe('$274');
    expect(formatUsd(1234.5)).toBe('$1,235');
  });

  it('gives the rates and the 30 days in one line', () => {
    expect(estimateSummary(COMPLETE)).toBe(
      '$0.55/h running · $0.0068/h off · ~$397 for 30 days'
    );
    expect(
      estimateSummary({
        ...COMPLETE,
        projection: { ...COMPLETE.projection, hours_per_day: 8, amount: 135.5 }
      })
    ).toBe('$0.55/h running · $0.0068/h off · ~$136 for 30 days at 8 h/day');
    // A cloud that can suspend: its rate too, here unknown (Google's price for the memory
    // kept is not known), while the rest is priced.
    expect(ON_DEMAND.complete).toBe(false);
    expect(estimateSummary(ON_DEMAND)).toBe(
      '$0.55/h running · $0.0068/h off · price unknown suspended · ~$397 for 30 days'
    );
  });

  it('says "price unknown", naming the parts, and never a number for those', () => {
    expect(SPOT.complete).toBe(false);
    expect(formatRate(SPOT.rates.running)).toBe('price unknown');
    expect(estimateSummary(SPOT)).toBe(
      'price unknown running · $0.0068/h off · price unknown suspended · price unknown for 30 days'
    );
    expect(unknownParts(SPOT)).toEqual([
      'GPU (1 x nvidia-tesla-t4)',
      'suspended memory (15 GB)'
    ]);
  });

  it('says a shipped spot price as "about", with its date', () => {
    const [vcpu, ...rest] = COMPLETE.rates.running.parts!;
    const dated = {
      ...vcpu,
      note: 'spot price of 2026-07-30; may have changed'
    };
    const running = { ...COMPLETE.rates.running, parts: [dated, ...rest] };
    expect(formatPartPrice(dated)).toBe(
      'about $0.13/h (spot price of 2026-07-30; may have changed)'
    );
    expect(formatRate(running)).toBe('about $0.55/h');
    // Other notes are not a date: the price reads as it is.
    expect(formatPartPrice(rest[2])).toBe('$0.005/h');
    expect(formatRate(COMPLETE.rates.running)).toBe('$0.55/h');
  });

  it('takes hours per day from 0 to 24', () => {
    expect(parseHoursPerDay('8')).toBe(8);
    expect(parseHoursPerDay(' 0 ')).toBe(0);
    expect(parseHoursPerDay('25')).toBeNull();
    expect(parseHoursPerDay('eight')).toBeNull();
    expect(parseHoursPerDay('')).toBeNull();
  });
});

describe('EstimateView', () => {
  const mount = mountReactPerTest();

  function render(
    state: Partial<React.ComponentProps<typeof EstimateView>['state']>
  ) {
    mount.render(
      <EstimateView
        state={{
          estimate: null,
          error: null,
          field: null,
          pending: false,
          ...state
        }}
        hoursPerDay="24"
        onHoursPerDay={() => undefined}
      />
    );
  }

  const summary = () =>
    mount.container.querySelector('.jp-ComputeServers-estimateSummary')!
      .textContent;

  it('shows the line, and what it is made of', () => {
    render({ estimate: COMPLETE });
    const view = mount.container.querySelector<HTMLElement>(
      '.jp-ComputeServers-estimate'
    )!;
    expect(view.dataset.complete).toBe('true');
    expect(summary()).toBe(estimateSummary(COMPLETE));
    expect(
      mount.container.querySelector('.jp-ComputeServers-estimateUnknown')
    ).toBeNull();
    const rows = Array.from(
      mount.container.querySelectorAll('.jp-ComputeServers-estimateDetails td')
    ).map(td => td.textContent);
    expect(rows).toContain('GPU (1 x nvidia-tesla-t4)');
    expect(rows).toContain('$0.35/h');
  });

  it('says which prices are unknown, and why', () => {
    render({ estimate: SPOT });
    expect(
      mount.container.querySelector<HTMLElement>('.jp-ComputeServers-estimate')!
        .dataset.complete
    ).toBe('false');
    expect(
      mount.container.querySelector('.jp-ComputeServers-estimateUnknown')!
        .textContent
    ).toBe(`Price unknown: ${unknownParts(SPOT).join(', ')}.`);
    const unknown = mount.container.querySelector(
      '.jp-ComputeServers-estimateDetails tr.jp-mod-unknown'
    )!;
    expect(unknown.textContent).toContain(
      'price unknown: No spot price for this GPU is shipped'
    );
    // The sum of the known parts is never shown as the rate.
    expect(mount.container.textContent).not.toMatch(/\$0\.076|\$0\.08/);
    // The machine's spot price reads as what it is: dated.
    const rows = Array.from(
      mount.container.querySelectorAll('.jp-ComputeServers-estimateDetails td')
    ).map(td => td.textContent);
    expect(rows).toContain(
      'about $0.04/h (spot price of 2026-07-30; may have changed)'
    );
  });

  it('says what spend limits count when a dated spot price counts at on-demand', () => {
    // As the server answers for the spot VM: its machine's spot price is a dated one.
    render({ estimate: SPOT });
    expect(
      mount.container.querySelector('.jp-ComputeServers-estimateLimit')!
        .textContent
    ).toBe(
      'Spend limits and the budget count $0.2018/h, the on-demand price, while the spot ' +
        'price is not refreshed (c.ComputeServerCosts.gcp_catalog_refresh).'
    );
    // On demand, limits count what is shown: nothing said.
    expect(limitCountNote(ON_DEMAND.rates.running)).toBeNull();
    render({ estimate: ON_DEMAND });
    expect(
      mount.container.querySelector('.jp-ComputeServers-estimateLimit')
    ).toBeNull();
  });

  it('says when it is on its way, or why there is none', () => {
    render({});
    expect(summary()).toBe('Estimating…');
    render({
      estimate: ON_DEMAND,
      error: 'Not a number.',
      field: 'config.cpu'
    });
    expect(summary()).toBe('No estimate until the marked option is fixed.');
    render({ error: 'cloud is not enabled' });
    expect(summary()).toBe('No estimate: cloud is not enabled');
    render({ estimate: ON_DEMAND, pending: true });
    expect(
      mount.container.querySelector('.jp-ComputeServers-estimate')!.classList
    ).toContain('jp-mod-pending');
  });
});

describe('EstimateTracker', () => {
  function tracker(answer: (body: IEstimateRequest) => Promise<IEstimate>) {
    const sent: IEstimateRequest[] = [];
    let changes = 0;
    const t = new EstimateTracker({
      fetch: body => {
        sent.push(body);
        return answer(body);
      },
      delay: 20,
      changed: () => changes++
    });
    return { t, sent, changes: () => changes };
  }

  it('sends only the last of a burst, and not the same options twice', async () => {
    const { t, sent } = tracker(async () => ON_DEMAND);
    t.request({ cloud: 'gcp', config: { cpu: 1 } });
    t.request({ cloud: 'gcp', config: { cpu: 2 } });
    t.request({ cloud: 'gcp', config: { cpu: 3 } });
    expect(t.state.pending).toBe(true);
    await until(() => !t.state.pending);
    expect(sent).toEqual([{ cloud: 'gcp', config: { cpu: 3 } }]);
    expect(t.state.estimate).toBe(ON_DEMAND);
    t.request({ cloud: 'gcp', config: { cpu: 3 } });
    await sleep(50);
    expect(sent).toHaveLength(1);
    t.dispose();
  });

  it('drops an answer to older options', async () => {
    const answers: ((e: IEstimate) => void)[] = [];
    const { t } = tracker(
      () => new Promise<IEstimate>(resolve => answers.push(resolve))
    );
    t.request({ config: { cpu: 1 } });
    await until(() => answers.length === 1);
    t.request({ config: { cpu: 2 } });
    await until(() => answers.length === 2);
    answers[1](SPOT);
    await until(() => t.state.estimate === SPOT);
    answers[0](ON_DEMAND);
    await sleep(10);
    expect(t.state.estimate).toBe(SPOT);
    t.dispose();
  });

  it("keeps the server's complaint and the field it names", async () => {
    const { t } = tracker(async () => {
      throw new ApiError(400, 'config.cpu must be a number.', 'config.cpu');
    });
    t.request({ config: { cpu: 'two' as unknown as number } });
    await until(() => t.state.error !== null);
    expect(t.state).toMatchObject({
      error: 'config.cpu must be a number.',
      field: 'config.cpu',
      pending: false
    });
    t.dispose();
  });
});

/** The local cloud at $0.05 a vCPU-hour and $0.73 a disk GB-month (10 GB: $0.01 an hour). */
const RATE_CARD = {
  cloud: 'local',
  kind: 'rate_card',
  currency: 'USD',
  sources: {
    test: {
      url: 'labextension/__tests__/estimate.spec.tsx',
      as_of: '2030-01-01'
    }
  },
  rates: {
    vcpu_hour: { price: 0.05, source: 'test' },
    disk_gb_month: { price: 0.73, source: 'test' }
  }
};

describe('estimates from a real server', () => {
  const cardDir = fs.mkdtempSync(path.join(os.tmpdir(), 'jcs-prices-'));
  const cardPath = path.join(cardDir, 'local.json');
  fs.writeFileSync(cardPath, JSON.stringify(RATE_CARD));
  const api = new JupyterServer({
    clouds: ['local', 'gcp'],
    config: { ComputeServerCosts: { price_tables: { local: cardPath } } }
  });
  let model: ServersModel;
  renderOutsideAct();

  beforeAll(async () => {
    await api.start();
  }, 90000);
  afterAll(async () => {
    await api.stop();
    fs.rmSync(cardDir, { recursive: true, force: true });
  }, 90000);

  beforeEach(async () => {
    await api.cleanup();
    model = new ServersModel(api.settings);
    await model.refreshClouds();
  });

  let dialog: CreateServerDialog | null = null;
  afterEach(() => {
    dialog?.reject();
    dialog?.dispose();
    dialog = null;
    model.dispose();
  });

  function type(name: string, value: string): void {
    const input = document.querySelector<HTMLInputElement>(
      `.jp-Dialog input[name="${name}"]`
    )!;
    typeInto(input, value);
  }

  const summary = () =>
    document.querySelector('.jp-Dialog .jp-ComputeServers-estimateSummary')
      ?.textContent ?? '';

  it('follows the CPUs and the hours a day in the create dialog', async () => {
    const body = new CreateServerBody(model, { estimateDelay: 20 });
    dialog = new CreateServerDialog(body);
    void dialog.launch();
    await until(() => summary().includes('running'), 10000);
    // 2 vCPUs at $0.05 and 10 GB of disk at $0.01 an hour.
    expect(summary()).toBe(
      '$0.11/h running · $0.01/h off · ~$79.20 for 30 days'
    );

    type('cpu', '1');
    await until(() => summary().startsWith('$0.06/h running'));
    expect(summary()).toBe(
      '$0.06/h running · $0.01/h off · ~$43.20 for 30 days'
    );

    type('hours_per_day', '8');
    // 8 h a day at $0.06, 16 h at $0.01, for 30 days.
    await until(() => summary().includes('8 h/day'));
    expect(summary()).toBe(
      '$0.06/h running · $0.01/h off · ~$19.20 for 30 days at 8 h/day'
    );
    const estimates = api.requests.filter(r => r.path.endsWith('/estimate'));
    expect(estimates[estimates.length - 1].body).toEqual({
      cloud: 'local',
      config: {
        image: 'python',
        image_tag: 'system',
        cpu: 1,
        memory_gb: Number(body.values.memory_gb),
        disk_gb: 10,
        gpu: null
      },
      hours_per_day: 8
    });
    // Typing is debounced: far fewer estimates than changes, none for the same options.
    const keys = estimates.map(r => JSON.stringify(r.body));
    expect(new Set(keys).size).toBe(keys.length);
  });

  it("shows the server's complaint by its field before anything is created", async () => {
    const cpus = (await api.clouds())[0].offerings.cpu!.max;
    const body = new CreateServerBody(model, { estimateDelay: 20 });
    dialog = new CreateServerDialog(body);
    void dialog.launch();
    await until(() => summary().includes('running'), 10000);

    type('cpu', String(cpus + 5));
    await until(
      () =>
        document.querySelector(
          '.jp-Dialog [data-field="cpu"] .jp-ComputeServers-fieldError'
        ) !== null
    );
    expect(
      document.querySelector(
        '.jp-Dialog [data-field="cpu"] .jp-ComputeServers-fieldError'
      )!.textContent
    ).toBe(`config.cpu is ${cpus + 5}, but this machine has ${cpus} CPUs.`);
    expect(summary()).toBe('No estimate until the marked option is fixed.');
    expect(await api.list()).toEqual([]);
  });

  it('accepts every gcp combination the picker offers, and prices spot as published', async () => {
    // The gcp cloud cannot be used here (no credentials), but it checks and prices configurations.
    const gcpCloud = model.clouds.find(c => c.name === 'gcp')!;
    expect(gcpCloud.available).toBe(false);
    const fixture = GCP_JSON as unknown as ICloud;
    const offerings = gcpOfferings(fixture)!;
    const base = { ...initialValues([fixture]), name: 'vm' };
    const configs = [];
    for (const gpu of ['', ...offerings.gpus.map(g => g.type)]) {
      const withGpu = withGcpGpuType(offerings, base, gpu, 'e2-standard-2');
      for (const count of gpu ? gpuCountOptions(offerings, gpu) : [1]) {
        const counted = withGcpGpuCount(offerings, withGpu, String(count));
        // Each machine type then offered, for the first and last counts.
        for (const machine of machineTypeOptions(offerings, counted)) {
          const values = withGcpMachineType(offerings, counted, machine.name);
          if (values.gpu_type !== gpu) {
            continue; // a type without GPUs while one is chosen: not offered
          }
          configs.push(buildConfig(values, fixture));
        }
      }
    }
    expect(configs.length).toBeGreaterThan(100);
    const refused: string[] = [];
    for (const config of configs) {
      const answer = await api.call('POST', 'estimate', {
        cloud: 'gcp',
        config
      });
      if (answer.status !== 200) {
        refused.push(`${JSON.stringify(config)}: ${answer.body.message}`);
      }
    }
    // N1 types with many vCPUs take a T4, P4 or P100 only in larger counts: the server says
    // so (the offerings do not give the vCPU limit per count), and the dialog shows it.
    expect(refused.length).toBeGreaterThan(0);
    for (const line of refused) {
      expect(line).toMatch(/may have at most \d+ vCPUs/);
    }

    const spot = await model.estimate({
      cloud: 'gcp',
      config: {
        machine_type: 'n1-standard-4',
        gpu: { type: 'nvidia-tesla-t4', count: 1 },
        spot: true
      }
    });
    // A T4 attached to an N1 machine has its shipped spot price too, dated.
    expect(unknownParts(spot)).not.toContain('GPU (1 x nvidia-tesla-t4)');
    expect(estimateSummary(spot)).toMatch(/^about \$0\.\d+\/h running/);
    const t4 = spot.rates.running.parts!.find(p => p.name === 'GPU')!;
    expect(formatPartPrice(t4)).toMatch(
      /^about \$0\.14\/h \(spot price in SkyPilot's catalog as read \d{4}-\d{2}-\d{2}; may have changed\)$/
    );
    // A G2 machine's too, with its date.
    const g2 = await model.estimate({
      cloud: 'gcp',
      config: {
        machine_type: 'g2-standard-4',
        gpu: { type: 'nvidia-l4', count: 1 },
        spot: true
      }
    });
    expect(estimateSummary(g2)).toMatch(/^about \$0\.\d+\/h running/);
    expect(formatPartPrice(g2.rates.running.parts![0])).toMatch(
      /^about \$0\.\d+\/h \(spot price of \d{4}-\d{2}-\d{2}; may have changed\)$/
    );
  });
});
