import type { Batch } from "../domain/batch.ts";
import type { JobDefinition } from "../domain/job.ts";
import type { Schedule, ScheduleExport } from "../domain/schedule.ts";
import type { VirtualMachine } from "../domain/vm.ts";
import type { ScheduleExportStore } from "../store/store.ts";
import { createRunLayout, createVmKeys, vmKeyOfRef } from "./run-layout.ts";
import type { PlannedRun, SubmittedRun } from "./scheduler.ts";

interface RunMeta {
  actor: string;
  scheduleId: string;
  scheduleRun: PlannedRun;
}

/** The engine's two ways of creating a run's work (engine.submit, engine.submitBatch). */
export interface RunSubmitter {
  submit(definition: JobDefinition, meta: RunMeta): Promise<{ job: { id: string } }>;
  submitBatch(definition: JobDefinition, meta: RunMeta & {
    childDefinition?(child: JobDefinition, vm: VirtualMachine): Promise<JobDefinition>;
  }): Promise<{ batch: Pick<Batch, "id" | "jobs"> }>;
}

export interface ScheduleSubmitDeps {
  engine: RunSubmitter;
  exports: ScheduleExportStore;
  /** The run's exports were recorded: retention looks at their VMs (a job may already have completed). */
  recorded?(exports: readonly ScheduleExport[]): void;
}

/**
 * Creates a schedule run's job, or its batch when the template selects VMs, each VM's job writing to
 * `<output_dir>/<vm>/<run time>/` (so runs never overwrite each other), and records those directories:
 * they are the only ones retention may later delete.
 */
export function createScheduleSubmit(deps: ScheduleSubmitDeps): (schedule: Schedule, run: PlannedRun) => Promise<SubmittedRun> {
  const layout = createRunLayout((dir) => deps.exports.isRecorded(dir));

  async function single(schedule: Schedule, run: PlannedRun, meta: RunMeta): Promise<SubmittedRun> {
    const template = schedule.jobTemplate;
    const vmKey = vmKeyOfRef(template.vm);
    const dir = await layout.reserve(template.outputDir, vmKey, run.scheduledTime);
    try {
      const { job } = await deps.engine.submit({ ...template, outputDir: dir }, meta);
      await record([{ scheduleId: schedule.id, vmKey, jobId: job.id, dir, runTime: run.scheduledTime }]);
      return { jobId: job.id };
    } finally {
      layout.release([dir]);
    }
  }

  async function batch(schedule: Schedule, run: PlannedRun, meta: RunMeta): Promise<SubmittedRun> {
    const template = schedule.jobTemplate;
    const keyOf = createVmKeys();
    /** By the VM's inventory path (what the batch's jobs carry as `vm`). */
    const planned = new Map<string, { vmKey: string; dir: string }>();
    try {
      const { batch } = await deps.engine.submitBatch(template, {
        ...meta,
        async childDefinition(child, vm) {
          const vmKey = keyOf(vm);
          const dir = await layout.reserve(template.outputDir, vmKey, run.scheduledTime);
          planned.set(vm.path, { vmKey, dir });
          return { ...child, outputDir: dir };
        },
      });
      const exports: ScheduleExport[] = [];
      for (const job of batch.jobs) {
        const place = planned.get(job.vm);
        if (place) exports.push({ scheduleId: schedule.id, ...place, jobId: job.jobId, runTime: run.scheduledTime });
      }
      await record(exports);
      return { batchId: batch.id };
    } finally {
      layout.release([...planned.values()].map((p) => p.dir));
    }
  }

  async function record(exports: ScheduleExport[]): Promise<void> {
    await deps.exports.record(exports);
    deps.recorded?.(exports);
  }

  return (schedule, run) => {
    const meta: RunMeta = { actor: "scheduler", scheduleId: schedule.id, scheduleRun: run };
    return schedule.jobTemplate.vmSelector ? batch(schedule, run, meta) : single(schedule, run, meta);
  };
}
