// The console's routes. `meta.role` is the least role that may open a page (the API
// refuses the rest anyway); `meta.title` names the page in the browser's tab.
import { createRouter, createWebHistory, type RouteRecordRaw } from "vue-router";
import { markRouteStart } from "@/lib/resource";
import { can, restore, type Role } from "@/lib/session";

declare module "vue-router" {
  interface RouteMeta {
    title?: string;
    role?: Role;
    public?: boolean;
  }
}

const routes: RouteRecordRaw[] = [
  { path: "/", redirect: "/overview" },
  {
    path: "/sign-in",
    name: "sign-in",
    component: () => import("@/pages/SignInPage.vue"),
    meta: { title: "Sign in", public: true },
  },
  {
    path: "/overview",
    name: "overview",
    component: () => import("@/pages/OverviewPage.vue"),
    meta: { title: "Overview" },
  },
  // catalog
  {
    path: "/models",
    name: "models",
    component: () => import("@/pages/catalog/ModelListPage.vue"),
    meta: { title: "Models" },
  },
  {
    path: "/models/new",
    name: "model-create",
    component: () => import("@/pages/catalog/ModelCreatePage.vue"),
    meta: { title: "New model", role: "editor" },
  },
  {
    path: "/models/import",
    alias: "/catalog/models/import",
    name: "model-import",
    component: () => import("@/pages/catalog/ModelImportPage.vue"),
    meta: { title: "Import from Hugging Face", role: "editor" },
  },
  {
    path: "/models/:id",
    name: "model",
    component: () => import("@/pages/catalog/ModelDetailPage.vue"),
    props: true,
    meta: { title: "Model" },
  },
  {
    path: "/datasets",
    name: "datasets",
    component: () => import("@/pages/catalog/DatasetListPage.vue"),
    meta: { title: "Datasets" },
  },
  {
    path: "/datasets/new",
    name: "dataset-create",
    component: () => import("@/pages/catalog/DatasetCreatePage.vue"),
    meta: { title: "New dataset", role: "editor" },
  },
  {
    path: "/datasets/:id",
    name: "dataset",
    component: () => import("@/pages/catalog/DatasetDetailPage.vue"),
    props: true,
    meta: { title: "Dataset" },
  },
  {
    path: "/datasets/:id/compare",
    name: "dataset-compare",
    component: () => import("@/pages/catalog/DatasetComparePage.vue"),
    props: true,
    meta: { title: "Compare dataset versions" },
  },
  {
    path: "/lineage",
    name: "lineage",
    component: () => import("@/pages/lineage/LineagePage.vue"),
    meta: { title: "Lineage" },
  },
  // training
  {
    path: "/training",
    name: "training-jobs",
    component: () => import("@/pages/training/TrainingJobListPage.vue"),
    meta: { title: "Training jobs" },
  },
  {
    path: "/training/new",
    name: "training-job-submit",
    component: () => import("@/pages/training/TrainingJobSubmitPage.vue"),
    meta: { title: "Submit training job", role: "editor" },
  },
  {
    path: "/training/:id",
    name: "training-job",
    component: () => import("@/pages/training/TrainingJobDetailPage.vue"),
    props: true,
    meta: { title: "Training job" },
  },
  {
    path: "/experiments",
    name: "experiments",
    component: () => import("@/pages/training/ExperimentSearchPage.vue"),
    meta: { title: "Experiments" },
  },
  {
    path: "/experiments/compare",
    name: "experiments-compare",
    component: () => import("@/pages/training/ExperimentComparePage.vue"),
    meta: { title: "Compare runs" },
  },
  // serving
  {
    path: "/serving",
    name: "endpoints",
    component: () => import("@/pages/serving/EndpointListPage.vue"),
    meta: { title: "Serving endpoints" },
  },
  {
    path: "/serving/new",
    name: "endpoint-deploy",
    component: () => import("@/pages/serving/EndpointDeployPage.vue"),
    meta: { title: "Deploy a model", role: "editor" },
  },
  {
    path: "/serving/:id",
    name: "endpoint",
    component: () => import("@/pages/serving/EndpointDetailPage.vue"),
    props: true,
    meta: { title: "Serving endpoint" },
  },
  {
    path: "/serving/:id/chat",
    name: "endpoint-chat",
    component: () => import("@/pages/serving/EndpointChatPage.vue"),
    props: true,
    meta: { title: "Chat" },
  },
  // workflows
  {
    path: "/pipelines",
    name: "pipelines",
    component: () => import("@/pages/workflows/PipelineListPage.vue"),
    meta: { title: "Pipelines" },
  },
  {
    path: "/pipelines/new",
    name: "pipeline-create",
    component: () => import("@/pages/workflows/PipelineCreatePage.vue"),
    meta: { title: "New pipeline", role: "editor" },
  },
  {
    path: "/pipelines/:id",
    name: "pipeline",
    component: () => import("@/pages/workflows/PipelineDetailPage.vue"),
    props: true,
    meta: { title: "Pipeline" },
  },
  // governance: every role reads the policies and the costs; admins change them
  {
    path: "/governance/policies",
    name: "governance-policies",
    component: () => import("@/pages/governance/PolicyListPage.vue"),
    meta: { title: "Policies" },
  },
  {
    path: "/governance/costs",
    name: "governance-costs",
    component: () => import("@/pages/governance/CostDashboardPage.vue"),
    meta: { title: "Costs" },
  },
  // administration
  {
    path: "/admin/integrations",
    name: "integrations",
    component: () => import("@/pages/admin/IntegrationListPage.vue"),
    meta: { title: "Integrations", role: "admin" },
  },
  {
    path: "/admin/integrations/:name",
    name: "integration",
    component: () => import("@/pages/admin/IntegrationDetailPage.vue"),
    props: true,
    meta: { title: "Integration", role: "admin" },
  },
  {
    path: "/admin/operations",
    name: "operations",
    component: () => import("@/pages/admin/OperationListPage.vue"),
    meta: { title: "Retry queue", role: "admin" },
  },
  {
    path: "/admin/audit-logs",
    name: "audit-logs",
    component: () => import("@/pages/admin/AuditLogPage.vue"),
    meta: { title: "Audit log", role: "admin" },
  },
  {
    path: "/admin/api-keys",
    name: "api-keys",
    component: () => import("@/pages/admin/ApiKeyListPage.vue"),
    meta: { title: "API keys", role: "admin" },
  },
  {
    path: "/:pathMatch(.*)*",
    name: "not-found",
    component: () => import("@/pages/NotFoundPage.vue"),
    meta: { title: "Not found" },
  },
];

export const router = createRouter({ history: createWebHistory(), routes });

router.beforeEach(async (to) => {
  markRouteStart();
  if (to.meta.public) return true;
  if (!(await restore())) {
    return { name: "sign-in", query: to.fullPath !== "/" ? { next: to.fullPath } : {} };
  }
  if (to.meta.role && !can(to.meta.role)) {
    return { name: "not-found", params: { pathMatch: to.path.slice(1).split("/") }, query: { denied: "1" } };
  }
  return true;
});

router.afterEach((to) => {
  document.title = to.meta.title ? `${to.meta.title} · llmops` : "llmops";
});
