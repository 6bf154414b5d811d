/**
 * The shapes the create and edit dialogs read from the REST API besides servers and clouds:
 * the image catalogue (`GET images`), the gcp cloud's offerings (`GET clouds`) and cost
 * estimates (`POST estimate`): names for schemas of openapi.json, from the generated types.
 */
import { components, operations } from '../api/schema';

type Schemas = components['schemas'];

/** An entry of the image catalogue. */
export type IImage = Schemas['Image'];

/** Whether an image needs a GPU (`required`), may use one (`optional`) or cannot (`none`). */
export type ImageGpu = NonNullable<IImage['gpu']>;

/** One version of an image. */
export type IImageVersion = IImage['versions'][number];

/** What `POST images/tested` answers. */
export type IImageTested =
  operations['markImageTested']['responses'][200]['content']['application/json'];

/** What `GET images` answers. */
export type IImageCatalog =
  operations['listImages']['responses'][200]['content']['application/json'];

/** What the gcp cloud offers (`offerings` of `GET clouds`). */
export type IGcpOfferings = Schemas['GcpOfferings'];

/** A region of the gcp cloud and its zones. */
export type IGcpRegion = IGcpOfferings['regions'][number];

/** A Compute Engine machine type the gcp cloud offers. */
export type IGcpMachineType = IGcpOfferings['machine_types'][number];

/** A GPU type the gcp cloud offers. */
export type IGcpGpu = IGcpOfferings['gpus'][number];

export type IGcpDiskType = IGcpOfferings['disk_types'][number];

/** What the slurm cloud offers: its clusters, each with the partitions sinfo read. */
export type ISlurmOfferings = Schemas['SlurmOfferings'];

export type ISlurmCluster = ISlurmOfferings['clusters'][number];

/** A partition of a cluster: its time limit and its largest node. */
export type ISlurmPartition = Schemas['SlurmPartition'];

/** What the openstack cloud offers: gcp's shape (flavors) with the project's networks. */
export type IOpenStackOfferings = Schemas['OpenStackOfferings'];

/** One charge of a configuration in one state. */
export type ICostPart = Schemas['CostPart'];

/** What a configuration costs per hour in one state. */
export type IRate = Schemas['Rate'];

export type IStateRates = Schemas['StateRates'];

/** The body of `POST estimate`. */
export type IEstimateRequest = Schemas['EstimateRequest'];

/** What `POST estimate` answers. */
export type IEstimate = Schemas['Estimate'];
