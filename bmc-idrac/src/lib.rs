//! Dell iDRAC 9+ over Redfish: the OEM behaviour plain Redfish does not cover.
//!
//! Status: skeleton. Virtual-CD boot through the OEM path, job-queue handling and
//! lifecycle-controller readiness arrive with the vendor-drivers issue.
