/**
 * The shapes the create and edit dialogs read from the REST API besides servers and clouds:
 * the image catalogue (`GET images`), the gcp cloud's offerings (`GET clouds`) and cost
 * estimates (`POST estimate`). See jupyter_compute_servers/openapi.json.
 */
import { IGpuSpec, IRange, IServerConfig } from '../servers/types';

/** Whether an image needs a GPU (`required`), may use one (`optional`) or cannot (`none`). */
export type ImageGpu = 'required' | 'optional' | 'none';

/** One version of an image. */
export interface IImageVersion {
  tag: string;
  label: string;
  /** Whether `jupyter compute-servers images test` passed on it. */
  tested: boolean;
}

/** An entry of the image catalogue. */
export interface IImage {
  id: string;
  label: string;
  description?: string;
  /** A data: URL or an https URL of a square icon. */
  icon?: string;
  /** Higher is offered first. */
  priority?: number;
  /** Default: optional. */
  gpu?: ImageGpu;
  /** The architectures it is built for (x86_64, arm64); default: both. */
  arch?: string[];
  min_disk_gb?: number;
  runtime: { kind: string; image?: string; [key: string]: unknown };
  kernels?: { name: string; display_name?: string }[];
  apps?: { name: string; label?: string; port?: number }[];
  versions: IImageVersion[];
}

/** What `GET images` answers. */
export interface IImageCatalog {
  images: IImage[];
  /** Where the catalogue was loaded from. */
  source: string;
  /** Why the configured catalogue was not used (the built-in one is then). */
  load_error?: string;
}

/** A region of the gcp cloud and its zones. */
export interface IGcpRegion {
  name: string;
  zones: string[];
}

/** A Compute Engine machine type the gcp cloud offers. */
export interface IGcpMachineType {
  name: string;
  family: string;
  cpu: number;
  memory_gb: number;
  /** The GPUs that come with it (accelerator-optimized types), or null. */
  gpu: IGpuSpec | null;
  /** Whether GPUs attach to it (N1). */
  gpus_attachable: boolean;
  /** x86_64 or arm64, when the server says; else known from the family. */
  arch?: string;
}

/** A GPU type the gcp cloud offers. */
export interface IGcpGpu {
  type: string;
  label: string;
  memory_gb: number;
  machine_family: string;
  /** Attached to N1 machine types (true), or bundled with its machine types (false). */
  attachable: boolean;
  /** The counts one VM may have. */
  counts: number[];
  /** The machine types it comes with (bundled GPUs), or null. */
  machine_types: string[] | null;
  /** The zones that have it, when read from the API (`live`); null otherwise. */
  zones: string[] | null;
}

export interface IGcpDiskType {
  name: string;
  label: string;
  /** Machine families that cannot use it. */
  not_on_families: string[];
}

/** What the gcp cloud offers (`offerings` of `GET clouds`). */
export interface IGcpOfferings {
  project: string;
  /** Whether zones and GPUs were read from the API (else a built-in table). */
  live: boolean;
  default_region: string;
  default_zone: string;
  regions: IGcpRegion[];
  machine_types: IGcpMachineType[];
  gpus: IGcpGpu[];
  disk_types: IGcpDiskType[];
  disk_gb: IRange;
  /** Boot disk images by `image:tag`, `image`, or `*`, `*arm64`, `*gpu`. */
  boot_images?: Record<string, { source?: string; min_disk_gb?: number }>;
  spot: boolean;
  suspend?: { supported: boolean; with_gpus: boolean };
}

/** One charge of a configuration in one state. */
export interface ICostPart {
  /** vCPU, memory, GPU, disk, external IP, machine, suspended memory... */
  name: string;
  /** What is counted, e.g. '4 x n2 in us-central1, on demand'. */
  detail: string;
  /** Dollars per hour; null when the price is unknown. */
  hourly: number | null;
  source: string;
  as_of: string;
  /** Why a price is unknown, or a remark on the figure. */
  note: string;
}

/** What a configuration costs per hour in one state. */
export interface IRate {
  /** Dollars per hour of the parts whose price is known. */
  hourly: number;
  /** The parts whose price is not known: when any, say "price unknown", never the number alone. */
  unknown: string[];
  parts?: ICostPart[];
}

export interface IStateRates {
  running: IRate;
  off: IRate;
  /** Null on clouds that cannot suspend. */
  suspended: IRate | null;
  deprovisioned: IRate;
}

/** The body of `POST estimate`. */
export interface IEstimateRequest {
  /** For a new server (default: the first enabled cloud). */
  cloud?: string;
  /** For an edit: `config` is then partial, over the server's. */
  server_id?: number;
  config?: Partial<IServerConfig>;
  /** Hours running per day for the projection (0-24, default 24). */
  hours_per_day?: number;
}

/** What `POST estimate` answers. */
export interface IEstimate {
  cloud: string;
  /** The complete configuration priced. */
  config: IServerConfig;
  currency: string;
  hours_per_month: number;
  rates: IStateRates;
  projection: {
    days: number;
    hours_per_day: number;
    amount: number;
    unknown: string[];
  };
  /** False when any price is unknown. */
  complete: boolean;
}
