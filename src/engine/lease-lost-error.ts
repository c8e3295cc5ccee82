/**
 * Why a cluster node stopped a run without recording anything: it no longer holds the job's lease (it could not
 * renew it, or another node took the job after it expired). The abort reason of the run's controller.
 */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
}
