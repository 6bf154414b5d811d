/**
 * The hardware a server's form may choose, per cloud, kept to valid combinations: on the gcp
 * cloud GPU types only with machine types they go with (attached to N1, or bundled with their
 * accelerator-optimized type), zones that have the GPU (read live, else built in for GPUs
 * attached to N1), disk
 * types the machine family can use; on every cloud a disk no smaller than the image needs.
 * The server checks everything again and has the last word.
 */
import { formatNumber } from '../servers/format';
import { ICloud, IOfferings } from '../servers/types';
import { GpuAvailability, imageGpu } from './images';
import {
  chosenPartition,
  ISlurmValues,
  partitionGpus,
  slurmOfferings
} from './slurm';
import { IOpenStackValues } from './openstack';
import {
  IGcpDiskType,
  IGcpGpu,
  IGcpMachineType,
  IGcpOfferings,
  IImage
} from './types';

/** The configuration part of a server's form: text as typed. */
export interface IHardwareValues extends ISlurmValues, IOpenStackValues {
  image: string;
  image_tag: string;
  cpu: string;
  memory_gb: string;
  disk_gb: string;
  /** '' for no GPU. */
  gpu_type: string;
  gpu_count: string;
  /** A share of one GPU (MPS) on an ssh host, e.g. '0.25'; '' or absent for whole GPUs. */
  gpu_fraction?: string;
  /** The ssh cloud's host, by id ('' for none, or for other clouds). */
  host: string;
  /** The gcp cloud's machine type, region, zone and disk type ('' on other clouds). */
  machine_type: string;
  region: string;
  zone: string;
  disk_type: string;
  spot: boolean;
}

/** Whether a cloud's offerings are the gcp cloud's (machine types, regions, GPU families). */
export function isGcpOfferings(
  offerings: IOfferings | undefined
): offerings is IOfferings & IGcpOfferings {
  const o = offerings as Partial<IGcpOfferings> | undefined;
  return !!o && Array.isArray(o.machine_types) && Array.isArray(o.regions);
}

export function gcpOfferings(cloud: ICloud | undefined): IGcpOfferings | null {
  return isGcpOfferings(cloud?.offerings)
    ? (cloud!.offerings as unknown as IGcpOfferings)
    : null;
}

/** Machine families with Arm CPUs (as the gcp cloud's catalogue says); all others x86_64. */
const ARM_FAMILIES = new Set(['t2a', 'c4a']);

export function machineArch(machine: IGcpMachineType): string {
  return (
    machine.arch ?? (ARM_FAMILIES.has(machine.family) ? 'arm64' : 'x86_64')
  );
}

export function findMachineType(
  offerings: IGcpOfferings,
  name: string
): IGcpMachineType | undefined {
  return offerings.machine_types.find(m => m.name === name);
}

export function findGcpGpu(
  offerings: IGcpOfferings,
  type: string
): IGcpGpu | undefined {
  return offerings.gpus.find(g => g.type === type);
}

/** A machine type as the select shows it: "n1-standard-4 · 4 vCPU · 15 GB". */
export function machineTypeLabel(
  machine: IGcpMachineType,
  offerings?: IGcpOfferings
): string {
  const parts = [
    machine.name,
    `${machine.cpu} vCPU`,
    `${formatNumber(machine.memory_gb)} GB`
  ];
  if (machine.gpu) {
    const gpu = offerings && findGcpGpu(offerings, machine.gpu.type);
    parts.push(`${machine.gpu.count}× ${gpu?.label ?? machine.gpu.type}`);
  }
  return parts.join(' · ');
}

/**
 * The machine types offered with the GPU chosen: with an attachable GPU (T4, V100...) those it
 * attaches to (N1); with a bundled one (L4, A100, H100) its own types; without, all of them (a
 * type with GPUs then brings its GPUs). Types for another architecture than the image's are
 * left out. The current type is always kept, so that the select shows it.
 */
export function machineTypeOptions(
  offerings: IGcpOfferings,
  values: IHardwareValues,
  image?: IImage
): IGcpMachineType[] {
  const gpu = values.gpu_type
    ? findGcpGpu(offerings, values.gpu_type)
    : undefined;
  return offerings.machine_types.filter(m => {
    if (m.name === values.machine_type) {
      return true;
    }
    if (image?.arch?.length && !image.arch.includes(machineArch(m))) {
      return false;
    }
    if (!gpu) {
      return !values.gpu_type;
    }
    return gpu.attachable
      ? m.gpus_attachable
      : (gpu.machine_types ?? []).includes(m.name);
  });
}

/** The counts offered for the GPU chosen. */
export function gpuCountOptions(
  offerings: IGcpOfferings,
  gpuType: string
): number[] {
  return findGcpGpu(offerings, gpuType)?.counts ?? [];
}

/**
 * The zones of a region, each with whether it has the GPU chosen (read live, or built in for
 * GPUs attached to N1; every zone where that is not known).
 */
export function zoneOptions(
  offerings: IGcpOfferings,
  region: string,
  gpuType: string
): { zone: string; hasGpu: boolean }[] {
  const zones = offerings.regions.find(r => r.name === region)?.zones ?? [];
  const gpu = gpuType ? findGcpGpu(offerings, gpuType) : undefined;
  return zones.map(zone => ({
    zone,
    hasGpu: !gpu || gpu.zones === null || gpu.zones.includes(zone)
  }));
}

/** Regions with a zone that has the GPU (every region when that is not known). */
export function regionsWithGpu(
  offerings: IGcpOfferings,
  gpuType: string
): string[] {
  return offerings.regions
    .filter(r => zoneOptions(offerings, r.name, gpuType).some(z => z.hasGpu))
    .map(r => r.name);
}

/** The disk types, each with why the machine type cannot use it ('' when it can). */
export function diskTypeOptions(
  offerings: IGcpOfferings,
  machineType: string
): { disk: IGcpDiskType; refused: string }[] {
  const family = findMachineType(offerings, machineType)?.family;
  return offerings.disk_types.map(disk => ({
    disk,
    refused:
      family && disk.not_on_families.includes(family)
        ? `not on ${family.toUpperCase()} machine types`
        : ''
  }));
}

/** The zone kept if it is in the region and has the GPU, else the first that has it. */
function fixZone<V extends IHardwareValues>(
  offerings: IGcpOfferings,
  values: V
): V {
  const zones = zoneOptions(offerings, values.region, values.gpu_type);
  const current = zones.find(z => z.zone === values.zone);
  if (current?.hasGpu) {
    return values;
  }
  const next = zones.find(z => z.hasGpu) ?? current ?? zones[0];
  return { ...values, zone: next?.zone ?? values.zone };
}

/** The disk type kept if the machine type can use it, else the first that it can. */
function fixDiskType<V extends IHardwareValues>(
  offerings: IGcpOfferings,
  values: V
): V {
  const options = diskTypeOptions(offerings, values.machine_type);
  const current = options.find(o => o.disk.name === values.disk_type);
  if (!current || !current.refused) {
    return values;
  }
  const usable = options.find(o => !o.refused);
  return usable ? { ...values, disk_type: usable.disk.name } : values;
}

/** A general-purpose machine type: the default one if it is, else the first. */
function generalMachineType(
  offerings: IGcpOfferings,
  preferred: string | undefined
): IGcpMachineType | undefined {
  const general = offerings.machine_types.filter(m => !m.gpu);
  return general.find(m => m.name === preferred) ?? general[0];
}

/**
 * Choose the GPU type: the machine type follows (an N1 type of about the same size for an
 * attachable GPU, the GPU's own type for a bundled one, a general type for none), and so do
 * the count, the zone and the disk type.
 */
export function withGcpGpuType<V extends IHardwareValues>(
  offerings: IGcpOfferings,
  values: V,
  gpuType: string,
  defaultMachineType?: string
): V {
  const current = findMachineType(offerings, values.machine_type);
  let next: V = { ...values, gpu_type: gpuType };
  const gpu = gpuType ? findGcpGpu(offerings, gpuType) : undefined;
  if (!gpu) {
    next.gpu_type = '';
    next.gpu_count = '1';
    if (!current || current.gpu) {
      const general = generalMachineType(offerings, defaultMachineType);
      next.machine_type = general?.name ?? values.machine_type;
    }
  } else if (gpu.attachable) {
    if (!current?.gpus_attachable) {
      const cpu = current?.cpu ?? 4;
      const n1 = offerings.machine_types
        .filter(m => m.gpus_attachable)
        .sort(
          (a, b) =>
            Math.abs(a.cpu - cpu) - Math.abs(b.cpu - cpu) ||
            Number(!a.name.includes('-standard-')) -
              Number(!b.name.includes('-standard-'))
        )[0];
      next.machine_type = n1?.name ?? values.machine_type;
    }
    const count = Number(values.gpu_count);
    next.gpu_count = String(
      gpu.counts.includes(count) ? count : (gpu.counts[0] ?? 1)
    );
  } else {
    const types = (gpu.machine_types ?? [])
      .map(name => findMachineType(offerings, name))
      .filter((m): m is IGcpMachineType => !!m);
    const count = Number(values.gpu_count);
    const machine =
      types.find(m => m.name === values.machine_type) ??
      types.find(m => m.gpu?.count === count) ??
      types[0];
    if (machine) {
      next.machine_type = machine.name;
      next.gpu_count = String(machine.gpu?.count ?? 1);
    }
  }
  next = fixZone(offerings, next);
  return fixDiskType(offerings, next);
}

/** Choose the machine type: a type with GPUs brings them; the disk type follows. */
export function withGcpMachineType<V extends IHardwareValues>(
  offerings: IGcpOfferings,
  values: V,
  name: string
): V {
  const machine = findMachineType(offerings, name);
  let next: V = { ...values, machine_type: name };
  if (machine?.gpu) {
    next.gpu_type = machine.gpu.type;
    next.gpu_count = String(machine.gpu.count);
  } else if (values.gpu_type) {
    const gpu = findGcpGpu(offerings, values.gpu_type);
    if (!gpu || !gpu.attachable || !machine?.gpus_attachable) {
      next.gpu_type = '';
      next.gpu_count = '1';
    }
  }
  next = fixZone(offerings, next);
  return fixDiskType(offerings, next);
}

/** Choose the GPU count: for a bundled GPU, the machine type with that many. */
export function withGcpGpuCount<V extends IHardwareValues>(
  offerings: IGcpOfferings,
  values: V,
  count: string
): V {
  const gpu = findGcpGpu(offerings, values.gpu_type);
  if (gpu && !gpu.attachable) {
    const machine = (gpu.machine_types ?? [])
      .map(name => findMachineType(offerings, name))
      .find(m => m?.gpu?.count === Number(count));
    if (machine) {
      return fixDiskType(offerings, {
        ...values,
        machine_type: machine.name,
        gpu_count: count
      });
    }
  }
  return { ...values, gpu_count: count };
}

/** Choose the region: the first of its zones that has the GPU chosen. */
export function withGcpRegion<V extends IHardwareValues>(
  offerings: IGcpOfferings,
  values: V,
  region: string
): V {
  return fixZone(offerings, { ...values, region, zone: '' });
}

/** The gcp cloud's boot disk minimum for the configuration (GPU images are larger). */
export function gcpBootMinDisk(
  offerings: IGcpOfferings,
  values: IHardwareValues
): number {
  const table = offerings.boot_images ?? {};
  const machine = findMachineType(offerings, values.machine_type);
  const fallback = values.gpu_type
    ? '*gpu'
    : machine && machineArch(machine) === 'arm64'
      ? '*arm64'
      : '*';
  for (const key of [
    `${values.image}:${values.image_tag}`,
    values.image,
    fallback
  ]) {
    if (table[key]) {
      return Math.max(offerings.disk_gb.min, table[key].min_disk_gb ?? 0);
    }
  }
  return offerings.disk_gb.min;
}

/** The smallest disk the configuration may have: the cloud's, the image's, the boot image's. */
export function minDiskGb(
  cloud: ICloud | undefined,
  values: IHardwareValues,
  image: IImage | undefined
): number {
  const gcp = gcpOfferings(cloud);
  return Math.max(
    cloud?.offerings.disk_gb?.min ?? 1,
    image?.min_disk_gb ?? 0,
    gcp ? gcpBootMinDisk(gcp, values) : 0
  );
}

/** The architecture of the machine chosen, when the cloud says (gcp machine types). */
export function chosenArch(
  cloud: ICloud | undefined,
  values: IHardwareValues
): string | null {
  const gcp = gcpOfferings(cloud);
  const machine = gcp && findMachineType(gcp, values.machine_type);
  return machine ? machineArch(machine) : null;
}

/** The GPU types the cloud offers for these values (the ssh cloud: the chosen host's). */
export function offeredGpuTypes(
  cloud: ICloud | undefined,
  values: IHardwareValues
): { type: string; free?: number }[] {
  const offerings = cloud?.offerings;
  if (!offerings) {
    return [];
  }
  const gcp = gcpOfferings(cloud);
  if (gcp) {
    return gcp.gpus.map(g => ({ type: g.type }));
  }
  if (offerings.hosts) {
    const host = offerings.hosts.find(h => String(h.id) === values.host);
    return (host?.gpus ?? []).map(g => ({ type: g.type, free: g.free }));
  }
  const slurm = slurmOfferings(cloud);
  if (slurm) {
    return partitionGpus(chosenPartition(slurm, values));
  }
  return (offerings.gpus ?? []).map(g => ({ type: g.type }));
}

/** Whether a GPU is chosen, could be, or cannot be on this cloud (or the chosen host). */
export function gpuAvailability(
  cloud: ICloud | undefined,
  values: IHardwareValues
): GpuAvailability {
  if (!cloud?.config_fields.includes('gpu')) {
    return 'impossible';
  }
  if (values.gpu_type) {
    return 'chosen';
  }
  return offeredGpuTypes(cloud, values).length > 0 ? 'possible' : 'impossible';
}

/** The values with a GPU: the first the cloud offers (a free one on an ssh host). */
export function withSomeGpu<V extends IHardwareValues>(
  cloud: ICloud | undefined,
  values: V
): V {
  const gcp = gcpOfferings(cloud);
  const types = offeredGpuTypes(cloud, values);
  if (gcp) {
    const attachable = gcp.gpus.filter(g => g.attachable);
    const zones = zoneOptions(gcp, values.region, '');
    const here = (g: IGcpGpu) =>
      g.zones === null || zones.some(z => g.zones!.includes(z.zone));
    const gpu = attachable.find(here) ?? gcp.gpus.find(here) ?? attachable[0];
    return gpu ? withGcpGpuType(gcp, values, gpu.type) : values;
  }
  const gpu = types.find(t => t.free === undefined || t.free > 0) ?? types[0];
  return gpu ? { ...values, gpu_type: gpu.type, gpu_count: '1' } : values;
}

/** The values without a GPU (on gcp, a general machine type instead of one with GPUs). */
export function withoutGpu<V extends IHardwareValues>(
  cloud: ICloud | undefined,
  values: V
): V {
  const gcp = gcpOfferings(cloud);
  if (gcp) {
    const fallback = cloud?.defaults.machine_type ?? undefined;
    return withGcpGpuType(gcp, values, '', fallback);
  }
  return { ...values, gpu_type: '', gpu_count: '1' };
}

/** Raise a disk below the minimum to it (a disk left empty stays empty: the default). */
export function withDiskAtLeast<V extends IHardwareValues>(
  values: V,
  minimum: number
): V {
  const disk = Number(values.disk_gb.trim());
  if (values.disk_gb.trim() === '' || !Number.isFinite(disk)) {
    return values;
  }
  return disk < minimum ? { ...values, disk_gb: String(minimum) } : values;
}

/**
 * Choose an image and version: a GPU is added when it needs one, removed when it cannot use
 * one, and the disk raised to what it needs.
 */
export function withImage<V extends IHardwareValues>(
  cloud: ICloud | undefined,
  values: V,
  image: IImage,
  tag: string
): V {
  let next: V = { ...values, image: image.id, image_tag: tag };
  const gpu = imageGpu(image);
  if (gpu === 'required' && !next.gpu_type) {
    next = withSomeGpu(cloud, next);
  } else if (gpu === 'none' && next.gpu_type) {
    next = withoutGpu(cloud, next);
  }
  if (cloud?.config_fields.includes('disk_gb')) {
    next = withDiskAtLeast(next, minDiskGb(cloud, next, image));
  }
  return next;
}
