/**
 * The hardware picker on the gcp cloud, from its offerings as `GET clouds` answers them
 * (fixtures/gcpCloud.json is the gcp cloud's own answer with the built-in table, recorded from
 * `GCPCloud().offerings()`): only valid combinations of machine type, GPU type and count, zone
 * and disk type; machine types shown with their vCPUs and memory; the request it makes.
 */
import * as React from 'react';
import { act } from 'react';

import {
  buildCreateRequest,
  CreateServerForm,
  ICreateFormValues,
  initialValues
} from '../servers/createForm';
import { ICloud } from '../servers/types';
import {
  diskTypeOptions,
  gcpBootMinDisk,
  gcpOfferings,
  gpuAvailability,
  machineTypeLabel,
  machineTypeOptions,
  minDiskGb,
  regionsWithGpu,
  withGcpGpuCount,
  withGcpGpuType,
  withGcpMachineType,
  withGcpRegion,
  withImage,
  zoneOptions
} from '../create/hardware';
import { IImageCatalogView } from '../create/configFields';
import { IGcpOfferings, IImage } from '../create/types';
import { mountReactPerTest } from './testing';
import GCP_JSON from './fixtures/gcpCloud.json';

const GCP = GCP_JSON as unknown as ICloud;
const OFFERINGS = gcpOfferings(GCP)!;

/** The same offerings as read live from a project: the T4 only in two zones. */
const LIVE: IGcpOfferings = {
  ...OFFERINGS,
  live: true,
  gpus: OFFERINGS.gpus.map(g =>
    g.type === 'nvidia-tesla-t4'
      ? { ...g, zones: ['us-central1-b', 'us-east1-c'] }
      : { ...g, zones: [] }
  )
};

const PYTORCH: IImage = {
  id: 'pytorch',
  label: 'PyTorch with CUDA',
  gpu: 'required',
  arch: ['x86_64'],
  min_disk_gb: 30,
  runtime: { kind: 'docker' },
  versions: [{ tag: 'cuda12', label: 'CUDA 12', tested: true }]
};

function values(extra: Partial<ICreateFormValues> = {}): ICreateFormValues {
  return { ...initialValues([GCP]), name: 'vm', ...extra };
}

describe('the gcp hardware rules', () => {
  it('start from the cloud defaults, in its default zone', () => {
    expect(values()).toMatchObject({
      machine_type: 'e2-standard-2',
      region: 'us-central1',
      zone: 'us-central1-a',
      disk_type: 'pd-balanced',
      disk_gb: '50',
      spot: false,
      gpu_type: ''
    });
    expect(gpuAvailability(GCP, values())).toBe('possible');
  });

  it('name machine types with their vCPUs, memory and bundled GPUs', () => {
    const find = (name: string) =>
      OFFERINGS.machine_types.find(m => m.name === name)!;
    expect(machineTypeLabel(find('n1-standard-4'))).toBe(
      'n1-standard-4 · 4 vCPU · 15 GB'
    );
    expect(machineTypeLabel(find('g2-standard-24'), OFFERINGS)).toBe(
      'g2-standard-24 · 24 vCPU · 96 GB · 2× NVIDIA L4'
    );
  });

  it('attach a T4 to an N1 type of about the size, and offer only N1 types then', () => {
    const start = values({ machine_type: 'e2-standard-4' });
    const t4 = withGcpGpuType(OFFERINGS, start, 'nvidia-tesla-t4');
    expect(t4).toMatchObject({
      gpu_type: 'nvidia-tesla-t4',
      gpu_count: '1',
      machine_type: 'n1-standard-4'
    });
    const families = new Set(
      machineTypeOptions(OFFERINGS, t4).map(m => m.family)
    );
    expect([...families]).toEqual(['n1']);
    expect(withGcpGpuCount(OFFERINGS, t4, '4')).toMatchObject({
      gpu_count: '4',
      machine_type: 'n1-standard-4'
    });
    // Back to no GPU: a general type again is fine, N1 stays.
    expect(withGcpGpuType(OFFERINGS, t4, '')).toMatchObject({
      gpu_type: '',
      machine_type: 'n1-standard-4'
    });
  });

  it('give a bundled GPU its own machine type, the count choosing which', () => {
    const l4 = withGcpGpuType(OFFERINGS, values(), 'nvidia-l4');
    expect(l4).toMatchObject({
      gpu_type: 'nvidia-l4',
      gpu_count: '1',
      machine_type: 'g2-standard-4'
    });
    expect(machineTypeOptions(OFFERINGS, l4).map(m => m.name)).toEqual(
      OFFERINGS.gpus.find(g => g.type === 'nvidia-l4')!.machine_types
    );
    expect(withGcpGpuCount(OFFERINGS, l4, '8')).toMatchObject({
      gpu_count: '8',
      machine_type: 'g2-standard-96'
    });
    // Dropping the GPU leaves the GPU machine type for the default general one.
    expect(
      withGcpGpuType(OFFERINGS, l4, '', GCP.defaults.machine_type!)
    ).toMatchObject({ gpu_type: '', machine_type: 'e2-standard-2' });
  });

  it('set the GPUs of a machine type that has them; drop them for one that cannot', () => {
    const a100 = withGcpMachineType(OFFERINGS, values(), 'a2-highgpu-2g');
    expect(a100).toMatchObject({
      gpu_type: 'nvidia-tesla-a100',
      gpu_count: '2'
    });
    expect(withGcpMachineType(OFFERINGS, a100, 'n2-standard-8')).toMatchObject({
      gpu_type: '',
      gpu_count: '1'
    });
  });

  it('switch to a disk type the machine family can use', () => {
    const hdd = values({ disk_type: 'pd-standard' });
    const g2 = withGcpMachineType(OFFERINGS, hdd, 'g2-standard-8');
    expect(g2.disk_type).toBe('pd-balanced');
    const refused = diskTypeOptions(OFFERINGS, 'g2-standard-8').filter(
      o => o.refused
    );
    expect(refused.map(o => [o.disk.name, o.refused])).toEqual([
      ['pd-standard', 'not on G2 machine types']
    ]);
  });

  it('offer only the zones that have the GPU, when read live', () => {
    const t4 = withGcpGpuType(LIVE, values(), 'nvidia-tesla-t4');
    expect(t4.zone).toBe('us-central1-b');
    expect(
      zoneOptions(LIVE, 'us-central1', 'nvidia-tesla-t4').map(z => [
        z.zone,
        z.hasGpu
      ])
    ).toEqual([
      ['us-central1-a', false],
      ['us-central1-b', true],
      ['us-central1-c', false],
      ['us-central1-f', false]
    ]);
    expect(withGcpRegion(LIVE, t4, 'us-east1').zone).toBe('us-east1-c');
    // From the built-in table: the zones that have a GPU attached to N1...
    expect(
      zoneOptions(OFFERINGS, 'us-central1', 'nvidia-tesla-p100').map(z => [
        z.zone,
        z.hasGpu
      ])
    ).toEqual([
      ['us-central1-a', false],
      ['us-central1-b', false],
      ['us-central1-c', true],
      ['us-central1-f', true]
    ]);
    // ... and no region without one (Google has no V100 in us-west4, no P4 in us-east1).
    expect(regionsWithGpu(OFFERINGS, 'nvidia-tesla-v100')).toEqual([
      'asia-east1',
      'europe-west4',
      'us-central1',
      'us-east1',
      'us-west1'
    ]);
    expect(regionsWithGpu(OFFERINGS, 'nvidia-tesla-p4')).not.toContain(
      'us-east1'
    );
    expect(regionsWithGpu(OFFERINGS, 'nvidia-tesla-t4')).toHaveLength(10);
    const p100 = withGcpGpuType(OFFERINGS, values(), 'nvidia-tesla-p100');
    expect(p100.zone).toBe('us-central1-c');
    // The accelerator-optimized types' GPUs: not known per zone, every zone is offered.
    expect(
      zoneOptions(OFFERINGS, 'us-central1', 'nvidia-l4').every(z => z.hasGpu)
    ).toBe(true);
  });

  it('need a bigger boot disk with GPUs, and the image minimum', () => {
    expect(gcpBootMinDisk(OFFERINGS, values())).toBe(10);
    const t4 = withGcpGpuType(OFFERINGS, values(), 'nvidia-tesla-t4');
    expect(gcpBootMinDisk(OFFERINGS, t4)).toBe(50);
    expect(minDiskGb(GCP, values(), PYTORCH)).toBe(30);
    // An image that needs a GPU brings one (an attachable one, in the region).
    const chosen = withImage(GCP, values({ disk_gb: '20' }), PYTORCH, 'cuda12');
    expect(chosen).toMatchObject({
      image: 'pytorch',
      gpu_type: 'nvidia-tesla-t4',
      machine_type: 'n1-standard-2',
      disk_gb: '50'
    });
  });
});

describe('the create form on the gcp cloud', () => {
  const mount = mountReactPerTest();
  let current: ICreateFormValues;

  function render(start: ICreateFormValues, catalog?: IImageCatalogView): void {
    current = start;
    const draw = () =>
      mount.render(
        <CreateServerForm
          clouds={[GCP]}
          values={current}
          errors={{}}
          catalog={catalog}
          onChange={update => {
            current = update(current);
            draw();
          }}
        />
      );
    draw();
  }

  function choose(name: string, value: string): void {
    const select = mount.container.querySelector<HTMLSelectElement>(
      `select[name="${name}"]`
    )!;
    act(() => {
      select.value = value;
      select.dispatchEvent(new Event('change', { bubbles: true }));
    });
  }

  function options(name: string): [string, boolean][] {
    return Array.from(
      mount.container.querySelectorAll<HTMLOptionElement>(
        `select[name="${name}"] option`
      )
    ).map(o => [o.value, o.disabled]);
  }

  it('offers region, zone, machine type, GPU, disk and spot', () => {
    render(values());
    const names = Array.from(
      mount.container.querySelectorAll<HTMLInputElement | HTMLSelectElement>(
        'input[name], select[name]'
      )
    ).map(e => e.name);
    expect(names).toEqual([
      'name',
      'cloud',
      'image',
      'image_tag',
      'region',
      'zone',
      'machine_type',
      'gpu_type',
      'disk_type',
      'disk_gb',
      'spot',
      'workspace_mode',
      'color'
    ]);
    const machine = mount.container.querySelector<HTMLSelectElement>(
      'select[name="machine_type"]'
    )!;
    expect(
      Array.from(machine.querySelectorAll('optgroup')).map(g => g.label)
    ).toEqual(['General purpose', 'With GPUs']);
    expect(machine.selectedOptions[0].textContent).toBe(
      'e2-standard-2 · 2 vCPU · 8 GB'
    );
    expect(
      mount.container.querySelector('[data-field="disk_gb"]')!.textContent
    ).toContain('Disk, GB (10–65536)');
    expect(
      mount.container.querySelector('[data-field="zone"]')!.textContent
    ).toContain('built-in table');
  });

  it('keeps GPU, machine type, count and disk together as they change', () => {
    render(values());
    choose('gpu_type', 'nvidia-tesla-v100');
    expect(current).toMatchObject({
      machine_type: 'n1-standard-2',
      gpu_count: '1',
      disk_gb: '50'
    });
    expect(options('gpu_count').map(([v]) => v)).toEqual(['1', '2', '4', '8']);
    expect(
      options('machine_type').every(([name]) => name.startsWith('n1-'))
    ).toBe(true);
    choose('gpu_count', '2');
    choose('machine_type', 'n1-highmem-8');
    choose('disk_type', 'pd-ssd');
    mount.container
      .querySelector<HTMLInputElement>('input[name="spot"]')!
      .click();
    expect(buildCreateRequest(current, GCP)).toEqual({
      name: 'vm',
      cloud: 'gcp',
      color: '#1f77b4',
      config: {
        image: 'python',
        image_tag: 'system',
        region: 'us-central1',
        zone: 'us-central1-a',
        machine_type: 'n1-highmem-8',
        disk_type: 'pd-ssd',
        disk_gb: 50,
        gpu: { type: 'nvidia-tesla-v100', count: 2 },
        spot: true
      }
    });
    // A G2 type brings its L4 and refuses the HDD disk type.
    choose('gpu_type', '');
    choose('machine_type', 'g2-standard-12');
    expect(current).toMatchObject({ gpu_type: 'nvidia-l4', gpu_count: '1' });
    expect(options('disk_type')).toContainEqual(['pd-standard', true]);
  });

  it('adds a GPU for an image that needs one, and then refuses "no GPU"', () => {
    const python: IImage = {
      id: 'python',
      label: 'Python',
      gpu: 'optional',
      runtime: { kind: 'python' },
      versions: [{ tag: 'system', label: 'System Python', tested: true }]
    };
    render(values(), {
      images: [python, PYTORCH],
      advanced: false,
      loading: false,
      error: null,
      setAdvanced: () => undefined
    });
    const card = mount.container.querySelector<HTMLElement>(
      '.jp-ComputeServers-imageCard[data-image-id="pytorch"]'
    )!;
    expect(card.textContent).toContain('Choosing it adds a GPU.');
    act(() => card.click());
    expect(current).toMatchObject({
      image: 'pytorch',
      image_tag: 'cuda12',
      gpu_type: 'nvidia-tesla-t4',
      machine_type: 'n1-standard-2',
      disk_gb: '50'
    });
    expect(options('gpu_type')[0]).toEqual(['', true]);
    expect(
      mount.container.querySelector('[data-field="gpu_type"]')!.textContent
    ).toContain('PyTorch with CUDA needs a GPU.');
  });
});
