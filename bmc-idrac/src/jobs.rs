//! The iDRAC job queue (`Managers/<id>/Oem/Dell/Jobs`): what is pending, what failed.

use serde_json::Value;

/// One Dell job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// `Id` (`JID_…`).
    pub id: String,
    /// `JobType` (`BIOSConfiguration`, `ImportConfiguration`, …).
    pub job_type: Option<String>,
    /// `JobState` as sent.
    pub state: String,
    /// `MessageId`.
    pub message_id: Option<String>,
    /// `Message`.
    pub message: Option<String>,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Waiting for a reboot or its start time, or running: it blocks new configuration.
    Pending,
    /// Finished successfully.
    Completed,
    /// Finished with an error.
    Failed,
}

impl Job {
    /// Reads a `DellJob`; `None` when it is not an object with an `Id` and a `JobState`.
    pub fn from_json(v: &Value) -> Option<Job> {
        let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        Some(Job {
            id: text("Id")?,
            job_type: text("JobType"),
            state: text("JobState")?,
            message_id: text("MessageId"),
            message: text("Message"),
        })
    }

    /// Where the job stands. Unknown states count as pending: a job nobody can read is
    /// not known to be out of the way.
    pub fn status(&self) -> JobStatus {
        match self.state.as_str() {
            "Completed" => JobStatus::Completed,
            "Failed" | "CompletedWithErrors" | "RebootFailed" => JobStatus::Failed,
            _ => JobStatus::Pending,
        }
    }
}

impl std::fmt::Display for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ", self.id)?;
        if let Some(t) = &self.job_type {
            write!(f, "({t}) ")?;
        }
        write!(f, "{}", self.state)?;
        match (&self.message_id, &self.message) {
            (Some(id), Some(m)) => write!(f, ": {id}: {m}"),
            (None, Some(m)) => write!(f, ": {m}"),
            (Some(id), None) => write!(f, ": {id}"),
            (None, None) => Ok(()),
        }
    }
}

/// The job queue as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobQueue {
    /// Every job, in the order the iDRAC lists them.
    pub jobs: Vec<Job>,
}

impl JobQueue {
    /// Jobs that block new configuration.
    pub fn pending(&self) -> impl Iterator<Item = &Job> {
        self.jobs
            .iter()
            .filter(|j| j.status() == JobStatus::Pending)
    }

    /// Jobs that failed.
    pub fn failed(&self) -> impl Iterator<Item = &Job> {
        self.jobs.iter().filter(|j| j.status() == JobStatus::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_sort_into_pending_completed_failed() {
        let q = JobQueue {
            jobs: [
                json!({"Id": "JID_1", "JobState": "Scheduled", "JobType": "BIOSConfiguration"}),
                json!({"Id": "JID_2", "JobState": "Completed"}),
                json!({"Id": "JID_3", "JobState": "Failed", "MessageId": "SYS051", "Message": "bad"}),
                json!({"Id": "JID_4", "JobState": "SomethingNew"}),
            ]
            .iter()
            .filter_map(Job::from_json)
            .collect(),
        };
        let pending: Vec<_> = q.pending().map(|j| j.id.as_str()).collect();
        assert_eq!(pending, ["JID_1", "JID_4"]);
        let failed: Vec<_> = q.failed().map(ToString::to_string).collect();
        assert_eq!(failed, ["JID_3 Failed: SYS051: bad"]);
        assert!(Job::from_json(&json!({"Id": "x"})).is_none());
        assert!(Job::from_json(&json!([])).is_none());
    }
}
